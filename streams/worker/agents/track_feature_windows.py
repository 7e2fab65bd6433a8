"""Agent: predictions topic -> feature windows, drift scores and alerts (thin: the work is
in :mod:`driftline.streams.worker.feature_windows` and the pure modules under it)."""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
import orjson
from faust import Stream
from faust.types import TP, StreamT, TableT
from mode.types.signals import BaseSignalT

from driftline.streams.settings import Settings
from driftline.streams.worker.feature_windows import FeatureWindowProcessor, load_rules
from driftline.streams.worker.idle import consumer_highwater
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: TableT[bytes, bytes],
           services: WorkerServices) -> FeatureWindowProcessor:
    """Register the agent and its idle timer on ``app``; return the processor they share."""
    processor = FeatureWindowProcessor(settings, window_states, topics.dead_letters,
                                       topics.alerts, services.sink.write,
                                       services.references.get, load_rules(settings))

    # Idle sources are judged only where the worker has caught up with the log.
    processor.backlog.highwater = consumer_highwater(app, topics.predictions.get_topic_name())

    @app.agent(topics.predictions, name="track_feature_windows")
    async def track_feature_windows(stream: StreamT[bytes]) -> None:
        await services.start()
        processor.joiner = services.joiner
        processor.performance = services.performance
        processor.outcomes = services.outcomes
        processor.outcome_tracker = services.outcome_tracker
        processor.registry = services.registry.registered
        processor.checkpointer.describe = services.registry.describe
        processor.checkpointer.explain = services.hops.explain
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                await processor.process(events)
        finally:
            await services.stop()

    # Faust's timer decorator is untyped.
    @app.timer(interval=max(1.0, settings.idle_close_seconds / 4),  # type: ignore[untyped-decorator]
               name="close_idle_windows")
    async def close_idle_windows() -> None:
        # The watermark goes through the topic, so closing windows of a quiet partition is
        # a message in the log like any other: a replay makes the same decision.
        for partition, model, event_time in processor.idle_watermarks():
            await topics.predictions.send(
                key=model.encode(), partition=partition,
                value=orjson.dumps({"type": "watermark", "model": model,
                                    "event_time": event_time}))

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        # Another worker may own and advance these partitions now: re-read their checkpoint
        # if they come back to us.
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        source = topics.predictions.get_topic_name()
        processor.forget({tp.partition for tp in revoked if tp.topic == source})

    @app.timer(interval=2.0, name="write_registry")  # type: ignore[untyped-decorator]
    async def write_registry() -> None:
        try:
            await services.write_registry()
        except Exception as exc:  # noqa: BLE001 - retried on the next tick
            log.warning("writing the model registry to ClickHouse failed (%s); retrying", exc)

    @app.timer(interval=10.0, name="log_feature_window_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("feature windows: %s", processor.stats.as_dict())

    return processor
