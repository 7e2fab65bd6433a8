"""Agent: labels topic -> labelled predictions in ClickHouse (the work is in
:mod:`driftline.streams.worker.label_join` and
:meth:`~driftline.streams.worker.feature_windows.FeatureWindowProcessor.process_labels`)."""

from __future__ import annotations

import logging
from typing import cast

import faust
from faust import Stream
from faust.types import StreamT

from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.feature_windows import FeatureWindowProcessor
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics, services: WorkerServices,
           processor: FeatureWindowProcessor) -> None:
    """Register the agent on ``app``; ``processor`` judges windows whose labels are due."""

    @app.agent(topics.labels, name="join_labels")
    async def join_labels(stream: StreamT[bytes]) -> None:
        await services.start()
        processor.joiner = services.joiner
        processor.performance = services.performance
        processor.outcomes = services.outcomes
        processor.outcome_tracker = services.outcome_tracker
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                runs, _ = batches.by_partition(events)
                for partition, run in runs.items():
                    # The predictions of this partition take turns with its labels.
                    async with services.joiner.locks[partition]:
                        await processor.process_labels(partition, run)
        finally:
            await services.stop()

    @app.timer(interval=10.0, name="log_label_join_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        if services.started:
            log.info("label join: %s; performance rows written: %d; outcome join: %s; "
                     "outcome rows written: %d", services.joiner.stats.as_dict(),
                     services.performance.windows_written, services.outcomes.stats.as_dict(),
                     services.outcome_tracker.windows_written)
