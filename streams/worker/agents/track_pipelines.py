"""Agents: OpenLineage topic -> driftline's pipelines topic (re-keyed by job) -> pipeline
runs, windows and SLA alerts (the work is in :mod:`driftline.streams.worker.pipelines`)."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import faust
import orjson
from faust import Stream
from faust.types import TP, StreamT, TableT
from mode.types.signals import BaseSignalT

from driftline.models.events.wire import BadMessage
from driftline.sinks.clickhouse import SinkBatch
from driftline.sinks.pipeline_store import PipelineStore
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.feature_windows import load_rules
from driftline.streams.worker.pipelines import PipelineProcessor, dead_letter, forwarded
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: TableT[bytes, bytes], services: WorkerServices) -> PipelineProcessor:
    checkpointer = Checkpointer(window_states, topics.dead_letters, topics.alerts,
                                services.sink.write, settings.max_message_bytes)
    processor = PipelineProcessor(settings, window_states, checkpointer, load_rules(settings))
    forwarded_count = [0, 0]  # forwarded, dead letters

    @app.agent(topics.lineage, name="forward_lineage")
    async def forward_lineage(stream: StreamT[bytes]) -> None:
        await services.start()  # dead letters go to ClickHouse too
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                letters, sent = [], []
                for event in events:
                    try:
                        key, value = forwarded(event, settings.max_message_bytes)
                    except BadMessage as exc:
                        letters.append(dead_letter(event, str(exc)))
                        continue
                    sent.append(await topics.pipelines.send(key=key, value=value))
                for future in sent:  # in Kafka before the source offsets are acked
                    await future
                if letters:
                    await checkpointer.publish(SinkBatch(revision=0, partition=0,
                                                         dead_letters=letters))
                forwarded_count[0] += len(sent)
                forwarded_count[1] += len(letters)
        finally:
            await services.stop()

    @app.agent(topics.pipelines, name="track_pipelines")
    async def track_pipelines(stream: StreamT[bytes]) -> None:
        await services.start()
        processor.store = PipelineStore(services.sink.client, settings.clickhouse_database)
        checkpointer.describe = services.registry.describe
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                await processor.process(events)
        finally:
            await services.stop()

    @app.timer(interval=max(1.0, settings.idle_close_seconds / 4),  # type: ignore[untyped-decorator]
               name="pipelines_clock")
    async def pipelines_clock() -> None:
        # The wall clock goes through the topic: a run that never came is noticed when the
        # partition is quiet, and a replay reads the same watermark.
        now_ms = time.time_ns() // 1_000_000
        for partition in processor.quiet():
            await topics.pipelines.send(key=b"", partition=partition, value=orjson.dumps(
                {"type": "watermark", "event_time": now_ms}))

    @app.on_partitions_assigned.connect
    async def watch_assigned(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
        source = topics.pipelines.get_topic_name()
        processor.assigned({tp.partition for tp in assigned if tp.topic == source})

    @app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        source = topics.pipelines.get_topic_name()
        processor.forget({tp.partition for tp in revoked if tp.topic == source})

    @app.timer(interval=10.0, name="log_pipeline_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("pipelines: %d forwarded, %d dead letters; %d run updates, %d alerts",
                 forwarded_count[0], forwarded_count[1], processor.runs, processor.alerts)

    return processor
