"""What the worker's agents share: the ClickHouse sink, the reference reader and the label
joiner, started once by whichever agent starts first and stopped by the last to stop.

A worker may start before its sink (ClickHouse still starting, or down, or the password
wrong): :meth:`WorkerServices.start` then waits, says so in the log with what to check, and
tries again with backoff until the sink answers; the agents start reading after that."""

from __future__ import annotations

import asyncio
import logging

from driftline.sinks.clickhouse import ClickHouseSink
from driftline.sinks.label_store import LabelStore
from driftline.sinks.outcome_store import OutcomeStore
from driftline.sinks.performance_store import PerformanceStore
from driftline.sinks.registry_store import write_registry
from driftline.streams.reference.profiles import ReferenceStore
from driftline.streams.registry import RegistryStore
from driftline.streams.settings import Settings
from driftline.streams.worker.hop_board import HopBoard
from driftline.streams.worker.label_join import LabelJoiner
from driftline.streams.worker.metrics import WorkerMetrics
from driftline.streams.worker.outcomes import OutcomeJoiner, OutcomeTracker
from driftline.streams.worker.performance import PerformanceTracker
from driftline.streams.worker.retry import Patience

log = logging.getLogger(__name__)


class WorkerServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sink = ClickHouseSink(settings)
        self.references = ReferenceStore(settings)
        self.registry = RegistryStore(settings)
        self.hops = HopBoard(settings)
        #: The worker's /metrics, shared by every agent's checkpointer.
        self.metrics = WorkerMetrics()
        self._joiner: LabelJoiner | None = None
        self._performance: PerformanceTracker | None = None
        self._outcomes: OutcomeJoiner | None = None
        self._outcome_tracker: OutcomeTracker | None = None
        self._lock = asyncio.Lock()
        self._users = 0
        self._references_started = False

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

    @property
    def outcomes(self) -> OutcomeJoiner:
        if self._outcomes is None:
            raise RuntimeError("WorkerServices.start() has not run")
        return self._outcomes

    @property
    def outcome_tracker(self) -> OutcomeTracker:
        if self._outcome_tracker is None:
            raise RuntimeError("WorkerServices.start() has not run")
        return self._outcome_tracker

    async def start(self) -> None:
        async with self._lock:
            if self._users == 0 and self._joiner is None:
                settings = self.settings
                patience = Patience(secrets=(settings.clickhouse_password,
                                             settings.kafka_sasl_password or ""))
                # The sink's error names the URL, the user and what to check.
                await patience.run("starting the worker's ClickHouse sink", self._start_sink,
                                   rollback=self._forget_sink)
            self._users += 1
            if self._users > 1:
                return
            await self.references.start()
            await self.registry.start()
            await self.hops.start()
            self._references_started = True
            try:
                # Existing references first, so the first windows are binned on their edges;
                # the registry too, so a registered version is not flagged as unknown.
                async with asyncio.timeout(self.settings.reference_wait_seconds):
                    await self.references.wait_ready()
                    await self.registry.wait_ready()
            except TimeoutError:
                log.warning("references and the registry not all read after %ss; going on "
                            "without waiting", self.settings.reference_wait_seconds)

    async def write_registry(self) -> None:
        """Mirror the registry records read since the last call into ClickHouse (kept for
        the next call if the write fails)."""
        records = self.registry.take_unwritten()
        if not records or not self.started:
            self.registry.put_back(records)
            return
        try:
            await write_registry(self.sink.client, self.settings.clickhouse_database, records)
        except Exception:
            self.registry.put_back(records)
            raise

    async def _start_sink(self) -> None:
        await self.sink.close()  # a client left by a failed try
        await self.sink.start()
        joiner = LabelJoiner(self.settings, LabelStore(self.sink.client,
                                                      self.settings.clickhouse_database))
        await joiner.start()
        database = self.settings.clickhouse_database
        performance = PerformanceStore(self.sink.client, database)
        outcomes = OutcomeStore(self.sink.client, database)
        outcome_joiner = OutcomeJoiner(self.settings, outcomes, joiner.store)
        await outcome_joiner.start()
        self._performance = PerformanceTracker(self.settings, performance)
        self._outcomes = outcome_joiner
        self._outcome_tracker = OutcomeTracker(self.settings, outcomes, performance)
        self._joiner = joiner

    def _forget_sink(self) -> None:
        self._joiner = None

    async def stop(self) -> None:
        async with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                if self._references_started:
                    await self.references.stop()
                    await self.registry.stop()
                    await self.hops.stop()
                    self._references_started = False
                await self.sink.close()
                self._joiner = None

