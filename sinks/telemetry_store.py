"""Write closed telemetry windows to ``gpu_windows`` and ``host_windows``, one columnar
insert per table and checkpoint (see :mod:`driftline.sinks.telemetry_schema`); each row's
``revision`` is its write version (:mod:`driftline.sinks.write_version`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.telemetry.aggregates import (
    GPU_METRICS,
    HOST_METRICS,
    GpuWindowRow,
    HostWindowRow,
)
from driftline.models.telemetry.series import MetricSummary
from driftline.sinks.telemetry_schema import GPU_COLUMNS, HOST_COLUMNS, STATS
from driftline.sinks.write_version import write_versions

__all__ = ["TelemetryStore", "gpu_columns", "host_columns"]


class TelemetryStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def write(self, gpus: Sequence[GpuWindowRow], hosts: Sequence[HostWindowRow],
                    offset: int | None = None) -> None:
        """Insert the rows, versioned by the write clock.

        ``offset``, the checkpoint's source offset, is accepted and not stored: offsets
        restart, so they cannot order rewrites.
        """
        if gpus:
            await self._insert("gpu_windows", GPU_COLUMNS,
                               gpu_columns(gpus, write_versions(len(gpus))))
        if hosts:
            await self._insert("host_windows", HOST_COLUMNS,
                               host_columns(hosts, write_versions(len(hosts))))

    async def _insert(self, table: str, names: list[str], columns: list[list[Any]]) -> None:
        await self.client.insert(table, columns, column_names=names, column_oriented=True,
                                 database=self.database)


def _stats(rows: Sequence[GpuWindowRow] | Sequence[HostWindowRow],
           metrics: Sequence[str]) -> list[list[float | None]]:
    """``<metric>_<stat>`` columns, in
    :func:`driftline.sinks.telemetry_schema.metric_columns` order."""
    return [[getattr(row.metrics[name], stat) for row in rows]
            for name in metrics for stat in STATS]


def _nulls(metrics: Mapping[str, MetricSummary]) -> dict[str, int]:
    return {name: m.nulls for name, m in metrics.items()}


def gpu_columns(rows: Sequence[GpuWindowRow], revision: int | range) -> list[list[Any]]:
    """The columns of ``gpu_windows``, in :data:`GPU_COLUMNS` order; ``revision``: one
    version for every row, or one per row."""
    return [
        [r.host for r in rows], [r.gpu_index for r in rows], [r.gpu_uuid for r in rows],
        [r.gpu_name for r in rows], [r.window_start for r in rows],
        [r.window_end for r in rows], [list(r.models) for r in rows],
        [r.samples for r in rows], *_stats(rows, tuple(GPU_METRICS)),
        [dict(r.null_counts) for r in rows], [r.throttled_samples for r in rows],
        [r.power_thermal_samples for r in rows], [list(r.throttle_reasons) for r in rows],
        [r.xid_errors for r in rows], [list(r.xid_codes) for r in rows],
        [r.ecc_corrected for r in rows], [r.ecc_uncorrected for r in rows],
        _versions(revision, len(rows)),
    ]


def host_columns(rows: Sequence[HostWindowRow], revision: int | range) -> list[list[Any]]:
    """The columns of ``host_windows``, in :data:`HOST_COLUMNS` order (``revision`` as in
    :func:`gpu_columns`)."""
    return [
        [r.host for r in rows], [r.window_start for r in rows], [r.window_end for r in rows],
        [list(r.models) for r in rows], [r.samples for r in rows],
        *_stats(rows, tuple(HOST_METRICS)), [_nulls(r.metrics) for r in rows],
        _versions(revision, len(rows)),
    ]


def _versions(revision: int | range, n: int) -> list[int]:
    return [revision] * n if isinstance(revision, int) else list(revision)
