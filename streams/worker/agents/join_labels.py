"""Agent: labels topic -> labelled predictions in ClickHouse (the work is in
:mod:`driftline.streams.worker.label_join`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import cast

import faust
from faust import Stream
from faust.types import EventT, StreamT

from driftline.streams.settings import Settings
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
        try:
            async for events in cast(Stream[bytes], stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                by_partition: dict[int, list[EventT[bytes]]] = defaultdict(list)
                for event in events:
                    by_partition[event.message.partition].append(event)
                joiner = services.joiner
                for partition, part in by_partition.items():
                    # The predictions of this partition take turns with its labels.
                    async with joiner.locks[partition]:
                        touched, clock = await joiner.on_labels(
                            sorted(part, key=lambda e: e.message.offset))
                        # Before the offsets are acked: a crash replays the labels, which
                        # touch the same windows again.
                        await services.performance.refresh(touched)
                        await processor.labels_read(partition, clock)
        finally:
            await services.stop()

    @app.timer(interval=10.0, name="log_label_join_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        if services.started:
            log.info("label join: %s; performance rows written: %d",
                     services.joiner.stats.as_dict(), services.performance.windows_written)
