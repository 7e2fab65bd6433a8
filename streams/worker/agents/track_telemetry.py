"""Agent: telemetry topic -> GPU and host windows and infrastructure alerts (thin: the work
is in :mod:`driftline.streams.worker.telemetry_windows` and the pure modules under it)."""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
from faust import Stream
from faust.types import TP, StreamT, TableT
from mode.types.signals import BaseSignalT

from driftline.models.telemetry.windows import HostWatermark
from driftline.sinks.telemetry_store import TelemetryStore
from driftline.streams.settings import Settings
from driftline.streams.worker.feature_windows import load_rules
from driftline.streams.worker.idle import consumer_highwater
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.telemetry_windows import TelemetryWindowProcessor
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: TableT[bytes, bytes],
           services: WorkerServices) -> TelemetryWindowProcessor:
    """Register the agent and its idle timer on ``app``; return the processor they share."""
    processor = TelemetryWindowProcessor(settings, window_states, topics.dead_letters,
                                         topics.alerts, services.sink.write,
                                         load_rules(settings))

    # Idle sources are judged only where the worker has caught up with the log.
    processor.backlog.highwater = consumer_highwater(app, topics.telemetry.get_topic_name())

    @app.agent(topics.telemetry, name="track_telemetry")
    async def track_telemetry(stream: StreamT[bytes]) -> None:
        await services.start()
        processor.store = TelemetryStore(services.sink.client, settings.clickhouse_database)
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                await processor.process(events)
        finally:
            await services.stop()

    # Faust's timer decorator is untyped.
    @app.timer(interval=max(1.0, settings.idle_close_seconds / 4),  # type: ignore[untyped-decorator]
               name="close_idle_hosts")
    async def close_idle_hosts() -> None:
        # Through the topic, like the predictions' watermarks: a host that went silent (the
        # case an SRE cares about) gets its last window closed, and a replay decides the same.
        for partition, host, event_time in processor.idle_watermarks():
            await topics.telemetry.send(key=host.encode(), partition=partition,
                                        value=HostWatermark(host, event_time).to_json())

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        source = topics.telemetry.get_topic_name()
        processor.forget({tp.partition for tp in revoked if tp.topic == source})

    @app.timer(interval=10.0, name="log_telemetry_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("telemetry windows: %s", processor.stats.as_dict())

    return processor
