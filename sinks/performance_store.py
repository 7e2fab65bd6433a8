"""Per-window model quality in ClickHouse: read a window's labelled predictions back, and
write its ``performance`` row.

A window's row is always computed from all of its labelled predictions (FINAL: each request
id once, with its latest label), so rewriting it after more labels, a correction or a
replay gives the right row, and the newest row replaces the older one: ``updated_at``, the
table's version, comes from a write clock (:class:`driftline.sinks.write_version.WriteClock`
in microseconds), never from an offset, and never goes back when the system clock does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.quality.performance_window import PairColumns, WindowPerformance
from driftline.sinks.write_version import WriteClock

WindowKey = tuple[str, str, int]  # (model, version, window start)

_PAIR_COLUMNS = ("prediction_time", "prediction", "label", "score", "probabilities",
                 "delay_seconds", "request_id")
_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "log_loss", "roc_auc",
            "ece")
_REGRESSION = ("mae", "rmse", "mape", "mean_error", "r2")
_SUMS = ("error", "abs_error", "sq_error", "target", "sq_target", "ape")
COLUMNS = [
    "model", "model_version", "window_start", "window_end", "task", "n_predicted", "n_labeled",
    "n_expired_labels", "coverage", "labels_final_at", "delay_p50_seconds", "delay_p90_seconds",
    "delay_p99_seconds", "delay_sum_seconds", "delay_counts", *_METRICS, "precision", "recall",
    "f1", "correct_count", "true_count", "predicted_count", "true_positive", "confusion",
    "positive_class", "log_loss_sum", "log_loss_count", "score_positive", "score_negative",
    "calibration_count", "calibration_correct", "calibration_confidence_sum", *_REGRESSION,
    *(f"sum_{name}" for name in _SUMS), "ape_count", "updated_at",
]
_UPDATED_AT = WriteClock(lambda: time.time_ns() // 1_000)  # µs, as the column holds


class PerformanceStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def pairs(self, model: str, version: str,
                    starts: Sequence[int]) -> dict[int, tuple[PairColumns, int]]:
        """Per window start: its counted labelled predictions, and its expired labels."""
        result = await self.client.query(
            "SELECT toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli(prediction_time),"
            " prediction, label, score, probabilities, delay_seconds, request_id, expired"
            f" FROM {self.database}.labeled_predictions FINAL"
            " WHERE model = {model:String} AND model_version = {version:String}"
            " AND window_start IN (SELECT fromUnixTimestamp64Milli(arrayJoin({starts:Array(Int64)})"
            ", 'UTC'))", parameters={"model": model, "version": version, "starts": list(starts)})
        grouped: dict[int, list[tuple[Any, ...]]] = {start: [] for start in starts}
        for row in result.result_rows:
            grouped.setdefault(row[0], []).append(tuple(row[1:]))
        out = {}
        for start, rows in grouped.items():
            counted = [r[:7] for r in rows if not r[7]]
            columns = {name: [r[i] for r in counted] for i, name in enumerate(_PAIR_COLUMNS)}
            out[start] = (PairColumns.from_columns(columns), len(rows) - len(counted))
        return out

    async def predicted_counts(self, model: str, version: str,
                               starts: Sequence[int]) -> dict[int, int]:
        """Events per closed window (from feature_windows); open windows are absent."""
        result = await self.client.query(
            "SELECT toUnixTimestamp64Milli(window_start), max(count)"
            f" FROM {self.database}.feature_windows FINAL"
            " WHERE model = {model:String} AND model_version = {version:String}"
            " AND window_start IN (SELECT fromUnixTimestamp64Milli(arrayJoin({starts:Array(Int64)})"
            ", 'UTC')) GROUP BY window_start",
            parameters={"model": model, "version": version, "starts": list(starts)})
        return {int(start): int(count) for start, count in result.result_rows}

    async def put(self, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            await self.client.insert("performance", rows, column_names=COLUMNS,
                                     database=self.database)


def performance_row(key: WindowKey, window_ms: int, perf: WindowPerformance,
                    n_predicted: int | None, n_expired: int, ttl_ms: int,
                    updated_at: float | None = None) -> tuple[Any, ...]:
    """One ``performance`` row, in :data:`COLUMNS` order."""
    model, version, start = key
    end = start + window_ms
    metrics = perf.metrics
    quantiles = perf.delay_quantiles()
    coverage = perf.n_labeled / n_predicted if n_predicted else None
    sums = perf.regression_sums
    return (
        model, version, start, end, perf.task, n_predicted, perf.n_labeled, n_expired,
        coverage, end + ttl_ms, quantiles["delay_p50_seconds"], quantiles["delay_p90_seconds"],
        quantiles["delay_p99_seconds"], perf.delay_sum_seconds,
        perf.delay.to_columns()["delay_counts"], *(_finite(metrics.get(m)) for m in _METRICS),
        perf.per_class.get("precision", {}), perf.per_class.get("recall", {}),
        perf.per_class.get("f1", {}), perf.correct_count, perf.true_count,
        perf.predicted_count, perf.true_positive, perf.confusion, perf.positive_class,
        perf.log_loss_sum, perf.log_loss_count, perf.score_positive, perf.score_negative,
        perf.calibration_count, perf.calibration_correct, perf.calibration_confidence_sum,
        *(_finite(metrics.get(m)) if perf.task == "regression" else None for m in _REGRESSION),
        *(sums.get(name, 0.0) for name in _SUMS), perf.ape_count,
        _UPDATED_AT.take()[0] if updated_at is None else int(updated_at * 1_000_000),  # µs
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
