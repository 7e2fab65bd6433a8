"""Write closed windows, late events and dead letters to ClickHouse in columnar batches.

The worker calls :meth:`ClickHouseSink.write` once per checkpoint with everything that
checkpoint produced, and acks the source offsets only after it returns: a commit means the
rows are durable. Rows replace earlier rows with the same key (see :mod:`driftline.sinks.schema`),
so writing a batch twice changes nothing; of two rows of a key the later write wins (see
:mod:`driftline.sinks.write_version`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.models.alerting.alerts import Alert
from driftline.models.data_quality.monitor import DataQualityRow
from driftline.models.drift.monitor import DriftScoreRow
from driftline.models.drift.reference import ReferenceProfile
from driftline.models.outcomes.monitor import OutcomeComparisonRow
from driftline.models.telemetry.service_monitor import ServiceWindowRow
from driftline.models.windows.feature_windows import FeatureWindowRow, LateEvents
from driftline.sinks.clickhouse_options import clickhouse_client_options, connect_error
from driftline.sinks.outcome_store import COLUMNS as OUTCOME_COLUMNS
from driftline.sinks.performance_store import COLUMNS as PERFORMANCE_COLUMNS
from driftline.sinks.schema import quantile_columns, statements
from driftline.sinks.write_version import write_versions
from driftline.streams.settings import Settings


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, and why."""

    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes | None


@dataclasses.dataclass
class SinkBatch:
    """Everything one checkpoint writes."""

    #: Source offset of the last message the checkpoint applied. Not the rows' version:
    #: offsets restart (see :mod:`driftline.sinks.write_version`).
    revision: int
    partition: int
    windows: list[FeatureWindowRow] = dataclasses.field(default_factory=list)
    late: list[LateEvents] = dataclasses.field(default_factory=list)
    dead_letters: list[DeadLetter] = dataclasses.field(default_factory=list)
    scores: list[DriftScoreRow] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    #: Baselines the worker built from a version's first windows.
    references: list[ReferenceProfile] = dataclasses.field(default_factory=list)
    #: ``performance`` rows (driftline.sinks.performance_store.COLUMNS order) of windows labels
    #: changed.
    performance: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    service: list[ServiceWindowRow] = dataclasses.field(default_factory=list)
    data_quality: list[DataQualityRow] = dataclasses.field(default_factory=list)
    #: ``outcomes`` rows (driftline.sinks.outcome_store.COLUMNS order) of windows closing or due.
    outcomes: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    outcome_comparisons: list[OutcomeComparisonRow] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.windows or self.late or self.dead_letters or self.scores
                    or self.alerts or self.references or self.performance or self.service
                    or self.data_quality or self.outcomes or self.outcome_comparisons)


_WINDOW_COLUMNS = [
    "model", "model_version", "feature", "kind", "window_start", "window_end", "count",
    "missing_count", "invalid_count", "mean", "variance", "min", "max", *quantile_columns(),
    "bin_edges", "bin_counts", "fine_bin_edges", "fine_bin_counts", "categories", "category_counts",
    "other_count", "revision",
]
_SCORE_COLUMNS = [
    "model", "model_version", "feature", "window_start", "window_end", "metric", "value",
    "p_value", "error_bound", "n_reference", "n_window", "threshold", "verdict",
    "reference_source", "reference_id", "span_start", "revision",
]
_SERVICE_COLUMNS = [
    "model", "model_version", "window_start", "window_end", "requests", "throughput_per_s",
    "latency_count", "latency_mean_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "latency_max_ms", "status_counts", "errors", "error_rate", "revision",
]
_DATA_QUALITY_COLUMNS = [
    "model", "model_version", "feature", "window_start", "window_end", "check", "value",
    "observed", "expected", "events", "affected", "threshold", "verdict", "reference_source",
    "reference_id", "revision",
]
_COMPARISON_COLUMNS = [
    "model", "model_version", "against", "against_version", "outcome", "window_start",
    "window_end", "span_start", "windows", "n", "mean", "against_n", "against_mean",
    "difference", "difference_low", "difference_high", "relative_change", "p_value", "verdict",
    "revision",
]
_LATE_COLUMNS = ["model", "model_version", "window_start", "source_partition", "source_offset",
                 "late_events"]
_DEAD_LETTER_COLUMNS = ["source_topic", "source_partition", "source_offset", "reason",
                        "message_key", "message_bytes"]
_ALERT_COLUMNS = [
    "id", "dedup_key", "state", "severity", "model", "model_version", "feature", "metric",
    "value", "threshold", "window_start", "window_end", "first_seen", "last_seen", "summary",
]
_REFERENCE_COLUMNS = ["model", "model_version", "source", "profile_id", "created_at",
                      "published_at", "features", "profile"]


class ClickHouseSink:
    """The one ClickHouse client of a worker: schema at start-up, then batched inserts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AsyncClient | None = None

    async def start(self) -> None:
        try:
            client = await clickhouse_connect.get_async_client(
                **clickhouse_client_options(self.settings))
        except ClickHouseError as error:
            raise connect_error(error, self.settings) from None
        self._client = client
        for ddl in statements(self.settings.clickhouse_database,
                              self.settings.label_retention_days):
            await client.command(ddl)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> ClickHouseSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            raise RuntimeError("ClickHouseSink is not started: call await sink.start() first")
        return self._client

    async def write(self, batch: SinkBatch) -> None:
        """Insert the batch, one columnar insert per table that has rows, side by side: a
        batch waits for its slowest insert, not for their sum. All of them settle before a
        failure is raised, so a retry of the batch never overlaps one of its own inserts."""
        tables = self._tables(batch)
        results = await asyncio.gather(*(self._insert(*table) for table in tables),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @staticmethod
    def _tables(batch: SinkBatch) -> list[tuple[str, list[str], Sequence[Sequence[Any]], bool]]:
        """(table, column names, data, column-oriented) of each table the batch writes."""
        tables: list[tuple[str, list[str], Sequence[Sequence[Any]], bool]] = []
        if batch.windows:
            tables.append(("feature_windows", _WINDOW_COLUMNS, _window_columns(
                batch.windows, write_versions(len(batch.windows))), True))
        if batch.late:
            late = batch.late
            tables.append(("late_events", _LATE_COLUMNS, [
                [r.model for r in late], [r.version for r in late],
                [r.window_start for r in late], [batch.partition] * len(late),
                [r.offset for r in late], [r.count for r in late]], True))
        for table, names, rows in (("drift_scores", _SCORE_COLUMNS, batch.scores),
                                   ("service_windows", _SERVICE_COLUMNS, batch.service),
                                   ("data_quality", _DATA_QUALITY_COLUMNS, batch.data_quality),
                                   ("outcome_comparisons", _COMPARISON_COLUMNS,
                                    batch.outcome_comparisons)):
            if rows:
                tables.append((table, names, [
                    *([getattr(r, "version" if name == "model_version" else name) for r in rows]
                      for name in names[:-1]),
                    list(write_versions(len(rows)))], True))
        if batch.alerts:
            alerts = batch.alerts
            tables.append(("alerts", _ALERT_COLUMNS, [
                [a.version if name == "model_version" else getattr(a, name) for a in alerts]
                for name in _ALERT_COLUMNS], True))
        if batch.references:
            refs = batch.references
            tables.append(("references", _REFERENCE_COLUMNS, [
                [r.model for r in refs], [r.version for r in refs], [r.source for r in refs],
                [r.profile_id for r in refs], [r.created_at_ms for r in refs],
                [r.created_at_ms for r in refs], [len(r.features) for r in refs],
                [r.to_json().decode() for r in refs]], True))
        if batch.performance:
            tables.append(("performance", PERFORMANCE_COLUMNS, batch.performance, False))
        if batch.outcomes:
            tables.append(("outcomes", OUTCOME_COLUMNS, batch.outcomes, False))
        if batch.dead_letters:
            letters = batch.dead_letters
            tables.append(("dead_letters", _DEAD_LETTER_COLUMNS, [
                [d.topic for d in letters], [d.partition for d in letters],
                [d.offset for d in letters], [d.reason for d in letters],
                [(d.key or b"").decode("utf-8", "replace") for d in letters],
                [len(d.value or b"") for d in letters]], True))
        return tables

    async def _insert(self, table: str, names: list[str], data: Sequence[Sequence[Any]],
                      column_oriented: bool = True) -> None:
        await self.client.insert(table, data, column_names=names,
                                 column_oriented=column_oriented,
                                 database=self.settings.clickhouse_database)


def _window_columns(rows: list[FeatureWindowRow], versions: range) -> list[list[Any]]:
    quantiles = [[_nullable(r.quantiles[i]) if r.quantiles else None for r in rows]
                 for i in range(len(quantile_columns()))]
    return [
        [r.model for r in rows], [r.version for r in rows], [r.feature for r in rows],
        [r.kind for r in rows], [r.window_start for r in rows], [r.window_end for r in rows],
        [r.count for r in rows], [r.missing_count for r in rows],
        [r.invalid_count for r in rows],
        [_nullable(r.mean) for r in rows], [_nullable(r.variance) for r in rows],
        [_nullable(r.min) for r in rows], [_nullable(r.max) for r in rows], *quantiles,
        [list(r.bin_edges) for r in rows], [list(r.bin_counts) for r in rows],
        [list(r.fine_bin_edges) for r in rows], [list(r.fine_bin_counts) for r in rows],
        [list(r.categories) for r in rows], [list(r.category_counts) for r in rows],
        [r.other_count for r in rows], list(versions),
    ]


def _nullable(value: float) -> float | None:
    # NaN means "no values" in the accumulators; in SQL that is NULL, not a number.
    return None if math.isnan(value) else value
