"""Agents: OpenLineage topic -> driftline's pipelines topic (re-keyed by job) -> pipeline
runs, windows and SLA alerts (the work is in :mod:`driftline.streams.worker.pipelines`)."""

from __future__ import annotations

import logging

import faust
from faust.types import TableT

from driftline.sinks.pipeline_store import PipelineStore
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.feature_windows import load_rules
from driftline.streams.worker.pipelines import PipelineProcessor, forwarded
from driftline.streams.worker.rekeyed import attach_rekeyed
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: TableT[bytes, bytes], services: WorkerServices) -> PipelineProcessor:
    checkpointer = Checkpointer(window_states, topics.dead_letters, topics.alerts,
                                services.sink.write, settings.max_message_bytes)
    processor = PipelineProcessor(settings, window_states, checkpointer, load_rules(settings))

    def started() -> None:
        processor.store = PipelineStore(services.sink.client, settings.clickhouse_database)
        checkpointer.describe = services.registry.describe

    checkpointer.metrics, checkpointer.name = services.metrics, "pipelines"
    attach_rekeyed(app, settings, "pipelines", topics.lineage, topics.pipelines,
                            forwarded, processor, services, started)

    @app.timer(interval=10.0, name="log_pipeline_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("pipelines: %d forwarded, %d dead letters; %d run updates, %d alerts",
                 processor.forwarded, processor.dead_lettered, processor.runs, processor.alerts)

    return processor
