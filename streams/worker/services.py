"""What the worker's agents share: the ClickHouse sink, the reference reader and the label
joiner, started once by whichever agent starts first and stopped by the last to stop."""

from __future__ import annotations

import asyncio
import logging

from driftline.sinks.clickhouse import ClickHouseSink
from driftline.sinks.label_store import LabelStore
from driftline.sinks.performance_store import PerformanceStore
from driftline.streams.reference.profiles import ReferenceStore
from driftline.streams.settings import Settings
from driftline.streams.worker.label_join import LabelJoiner
from driftline.streams.worker.performance import PerformanceTracker

log = logging.getLogger(__name__)


class WorkerServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sink = ClickHouseSink(settings)
        self.references = ReferenceStore(settings)
        self._joiner: LabelJoiner | None = None
        self._performance: PerformanceTracker | None = None
        self._lock = asyncio.Lock()
        self._users = 0

    @property
    def started(self) -> bool:
        return self._joiner is not None and self._users > 0

    @property
    def joiner(self) -> LabelJoiner:
        if self._joiner is None:
            raise RuntimeError("WorkerServices.start() has not run")
        return self._joiner

    @property
    def performance(self) -> PerformanceTracker:
        if self._performance is None:
            raise RuntimeError("WorkerServices.start() has not run")
        return self._performance

    async def start(self) -> None:
        async with self._lock:
            self._users += 1
            if self._users > 1:
                return
            await self.sink.start()
            self._joiner = LabelJoiner(self.settings, LabelStore(
                self.sink.client, self.settings.clickhouse_database))
            await self._joiner.start()
            self._performance = PerformanceTracker(self.settings, PerformanceStore(
                self.sink.client, self.settings.clickhouse_database))
            await self.references.start()
            try:
                # Existing references first, so the first windows are binned on their edges.
                async with asyncio.timeout(self.settings.reference_wait_seconds):
                    await self.references.wait_ready()
            except TimeoutError:
                log.warning("references not all read after %ss; going on without waiting",
                            self.settings.reference_wait_seconds)

    async def stop(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                await self.references.stop()
                await self.sink.close()
