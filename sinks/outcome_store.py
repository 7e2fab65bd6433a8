"""Business outcomes in ClickHouse: reports waiting for their prediction, each request's
outcome once (``outcome_reports``), and the per-window sums (``outcomes``).

The join that fills them is the label join's (:mod:`driftline.models.quality.label_join`),
run once per outcome name: a report is a label whose value is a number. Every table
replaces rows by key, so a replay after a crash changes nothing. A window's ``outcomes``
rows are always computed from all of its reports (FINAL: each request once, its latest
value), so rewriting them after more reports, a correction or a replay gives the right sums.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.quality.label_join import Key, Label, LabeledPrediction, Prediction
from driftline.sinks.label_store import lookup, versioned
from driftline.sinks.write_version import WriteClock

#: (model, request id, outcome name)
OutcomeKey = tuple[str, str, str]
WindowKey = tuple[str, str, int]  # (model, version, window start)

_WAITING_COLUMNS = ["model", "request_id", "outcome", "event_time", "value",
                    "outcome_revision", "settled", "revision"]
_REPORT_COLUMNS = ["model", "model_version", "window_start", "outcome", "request_id", "value",
                   "prediction_time", "outcome_time", "delay_seconds", "expired",
                   "outcome_revision", "revision"]
COLUMNS = ["model", "model_version", "window_start", "window_end", "outcome", "n_predicted",
           "n_reported", "n_expired", "total", "sum_squares", "positive", "mean",
           "per_prediction", "rate", "delay_sum_seconds", "outcomes_final_at", "updated_at"]
_UPDATED_AT = WriteClock(lambda: time.time_ns() // 1_000)  # µs, as the column holds


@dataclasses.dataclass(frozen=True)
class OutcomeSums:
    """One outcome of one model version in one window, summed over its counted reports."""

    n_reported: int = 0
    n_expired: int = 0
    total: float = 0.0
    sum_squares: float = 0.0
    positive: int = 0
    delay_sum_seconds: float = 0.0


class OutcomeStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def waiting(self, keys: Iterable[Key]) -> dict[OutcomeKey, Label]:
        """Reports of these requests still waiting for their prediction, every outcome."""
        rows = await lookup(self.client, f"{self.database}.waiting_outcomes",
                            _WAITING_COLUMNS[:6], keys)
        return {(m, rid, name): Label(m, rid, t, value, rev)
                for m, rid, name, t, value, rev in rows}

    async def reports(self, keys: Iterable[Key],
                      window_ms: int) -> dict[OutcomeKey, LabeledPrediction]:
        """The stored report of each outcome of these requests, with its prediction."""
        columns = ["model", "model_version", "request_id", "outcome", "prediction_time",
                   "outcome_time", "value", "outcome_revision", "expired"]
        rows = await lookup(self.client, f"{self.database}.outcome_reports", columns, keys)
        out = {}
        for m, v, rid, name, pt, ot, value, rev, expired in rows:
            out[(m, rid, name)] = LabeledPrediction(
                Prediction(m, v, rid, pt), Label(m, rid, ot, value, rev), pt - pt % window_ms,
                bool(expired))
        return out

    async def put_waiting(self, name: str, labels: Sequence[Label],
                          settled: Iterable[Label] = ()) -> None:
        """Store reports of ``name`` waiting for their prediction; mark ``settled`` ones."""
        rows = [(lb.model, lb.request_id, name, lb.event_time, float(lb.label), lb.revision,
                 gone) for gone, group in ((0, labels), (1, settled)) for lb in group]
        await self._insert("waiting_outcomes", _WAITING_COLUMNS, versioned(rows))

    async def put_reports(self, name: str, pairs: Sequence[LabeledPrediction]) -> None:
        await self._insert("outcome_reports", _REPORT_COLUMNS, versioned([
            (r.prediction.model, r.prediction.version, r.window_start, name, r.request_id,
             float(r.label.label), r.prediction.event_time, r.label.event_time,
             r.delay_seconds, int(r.expired), r.label.revision) for r in pairs]))

    async def sums(self, model: str, version: str,
                   starts: Sequence[int]) -> dict[int, dict[str, OutcomeSums]]:
        """Per window start and outcome name: the sums of its reports (expired apart)."""
        result = await self.client.query(
            "SELECT toUnixTimestamp64Milli(window_start), outcome, countIf(NOT expired),"
            " countIf(expired), sumIf(value, NOT expired), sumIf(value * value, NOT expired),"
            " countIf(value != 0 AND NOT expired), sumIf(delay_seconds, NOT expired)"
            f" FROM {self.database}.outcome_reports FINAL"
            " WHERE model = {model:String} AND model_version = {version:String}"
            " AND window_start IN (SELECT fromUnixTimestamp64Milli(arrayJoin({starts:Array(Int64)})"
            ", 'UTC')) GROUP BY window_start, outcome",
            parameters={"model": model, "version": version, "starts": list(starts)})
        out: dict[int, dict[str, OutcomeSums]] = {start: {} for start in starts}
        for start, name, n, expired, total, squares, positive, delay in result.result_rows:
            out.setdefault(int(start), {})[name] = OutcomeSums(
                int(n), int(expired), float(total), float(squares), int(positive), float(delay))
        return out

    async def put(self, rows: Iterable[Sequence[Any]]) -> None:
        await self._insert("outcomes", COLUMNS, [tuple(row) for row in rows])

    async def _insert(self, table: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self.client.insert(table, rows, column_names=names, database=self.database)


def outcome_row(key: WindowKey, window_ms: int, name: str, sums: OutcomeSums,
                n_predicted: int | None, ttl_ms: int) -> tuple[Any, ...]:
    """One ``outcomes`` row, in :data:`COLUMNS` order."""
    model, version, start = key
    end = start + window_ms
    reported = sums.n_reported
    return (model, version, start, end, name, n_predicted, reported, sums.n_expired,
            sums.total, sums.sum_squares, sums.positive,
            sums.total / reported if reported else None,
            sums.total / n_predicted if n_predicted else None,
            sums.positive / n_predicted if n_predicted else None,
            sums.delay_sum_seconds, end + ttl_ms, _UPDATED_AT.take()[0])
