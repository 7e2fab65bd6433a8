"""Assemble the worker app: topics, tables and agents on one :class:`faust.App`."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from typing import Any

import faust
from mode.types.signals import BaseSignalT

from driftline.streams.settings import Settings
from driftline.streams.worker import heap
from driftline.streams.worker.agents import AGENT_MODULES
from driftline.streams.worker.app import build_app
from driftline.streams.worker.feature_windows import FeatureWindowProcessor
from driftline.streams.worker.metric_sources import register_sources
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.tables import declare_window_states
from driftline.streams.worker.telemetry_windows import TelemetryWindowProcessor
from driftline.streams.worker.topics import declare_topics


@dataclasses.dataclass(frozen=True)
class Worker:
    app: faust.App
    feature_windows: FeatureWindowProcessor
    telemetry: TelemetryWindowProcessor


def create_worker(settings: Settings) -> Worker:
    if settings.broker_flavor == "tansu":
        from driftline.streams.embedded.tansu_compat import install

        install()
    app = build_app(settings)
    topics = declare_topics(app, settings)
    window_states = declare_window_states(app)
    services = WorkerServices(settings)
    agents = [importlib.import_module(name) for name in AGENT_MODULES]
    (track_feature_windows, join_labels, track_telemetry, deliver_alerts, track_pipelines,
     track_service_chains) = agents
    processor = track_feature_windows.attach(app, settings, topics, window_states, services)
    join_labels.attach(app, settings, topics, services, processor)
    telemetry = track_telemetry.attach(app, settings, topics, window_states, services)
    deliver_alerts.attach(app, settings, topics, services, processor.rules)
    pipelines = track_pipelines.attach(app, settings, topics, window_states, services)
    chains = track_service_chains.attach(app, settings, topics, window_states, services)
    # One record of what is durable, and the consumer commits from it (not from acks).
    telemetry.offsets = pipelines.offsets = chains.offsets = processor.offsets
    processor.checkpointer.metrics = telemetry.checkpointer.metrics = services.metrics
    processor.checkpointer.name, telemetry.checkpointer.name = "feature_windows", "telemetry"
    register_sources(services.metrics, app, settings, processor, telemetry, pipelines, chains,
                     services)
    if settings.metrics_port:
        @app.task  # type: ignore[untyped-decorator]
        async def serve_metrics() -> None:
            await services.metrics.serve(settings.metrics_host, settings.metrics_port)

    sources = (settings.predictions_topic, settings.labels_topic, settings.telemetry_topic,
               settings.pipelines_topic, settings.service_chains_topic)

    async def commit_from_checkpoints(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                                      **kwargs: Any) -> None:
        # At the start of the first rebalance: before any message is acked (so before any
        # commit) and before recovery ends with its seek to the committed offsets.
        processor.offsets.install(app.consumer, sources, known_from_commit=[settings.labels_topic])

    app.on_partitions_revoked.connect(commit_from_checkpoints)
    app.on_partitions_assigned.connect(commit_from_checkpoints)
    if settings.release_memory_seconds > 0 and heap.can_release():
        @app.timer(interval=settings.release_memory_seconds,  # type: ignore[untyped-decorator]
                   name="release_free_memory")
        async def release_free_memory() -> None:
            await asyncio.to_thread(heap.release_free_memory)

    return Worker(app=app, feature_windows=processor, telemetry=telemetry)
