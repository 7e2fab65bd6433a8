"""Service chains in ClickHouse: ``service_operations`` and ``service_calls``, one row per
operation or hop and window (the latest write wins)."""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.traces.hops import CALL, HopRow
from driftline.sinks.write_version import write_versions

_COMMON = ["window_start", "window_end", "calls", "errors", "error_rate", "latency_mean_ms",
           "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
_OPERATION_COLUMNS = ["service", "operation", *_COMMON, "revision"]
_CALL_COLUMNS = ["caller", "callee", *_COMMON, "baseline_p95_ms", "baseline_error_rate",
                 "latency_p95_ratio", "slow_calls", "revision"]


class ChainStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def write(self, rows: Sequence[HopRow]) -> None:
        calls = [r for r in rows if r.kind == CALL]
        operations = [r for r in rows if r.kind != CALL]
        if operations:
            await self.client.insert("service_operations", [
                (r.service, r.peer, *_common(r), v)
                for r, v in zip(operations, write_versions(len(operations)), strict=True)],
                column_names=_OPERATION_COLUMNS, database=self.database)
        if calls:
            await self.client.insert("service_calls", [
                (r.service, r.peer, *_common(r), r.baseline_p95_ms, r.baseline_error_rate,
                 r.latency_p95_ms / r.baseline_p95_ms
                 if r.baseline_p95_ms and r.latency_p95_ms is not None else None,
                 r.slow_calls, v)
                for r, v in zip(calls, write_versions(len(calls)), strict=True)],
                column_names=_CALL_COLUMNS, database=self.database)


def _common(r: HopRow) -> tuple[object, ...]:
    return (r.window_start, r.window_end, r.calls, r.errors, r.error_rate, r.latency_mean_ms,
            r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms)
