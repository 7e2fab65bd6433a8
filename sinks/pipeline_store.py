"""Pipeline runs and windows in ClickHouse: ``pipeline_runs`` (each run once, its latest
state) and ``pipeline_windows`` (per job and window: runs started, completed, failed)."""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.lineage.pipelines import RunRow, WindowRow
from driftline.sinks.write_version import write_versions

_RUN_COLUMNS = ["job_namespace", "job_name", "run_id", "state", "started_at", "ended_at",
                "duration_seconds", "parent_run_id", "parent_job", "inputs", "outputs",
                "error_message", "event_time", "revision"]
_WINDOW_COLUMNS = ["job", "window_start", "window_end", "started", "completed", "failed",
                   "duration_sum_seconds", "duration_max_seconds", "last_start", "last_success",
                   "revision"]


class PipelineStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def write(self, runs: Sequence[RunRow], windows: Sequence[WindowRow]) -> None:
        if runs:
            await self.client.insert("pipeline_runs", [
                (r.job_namespace, r.job_name, r.run_id, r.state, r.started_at, r.ended_at,
                 r.duration_seconds, r.parent_run_id, r.parent_job, list(r.inputs),
                 list(r.outputs), r.error_message, r.event_time, v)
                for r, v in zip(runs, write_versions(len(runs)), strict=True)],
                column_names=_RUN_COLUMNS, database=self.database)
        if windows:
            await self.client.insert("pipeline_windows", [
                (w.job, w.window_start, w.window_end, w.started, w.completed, w.failed,
                 w.duration_sum_seconds, w.duration_max_seconds, w.last_start, w.last_success,
                 v) for w, v in zip(windows, write_versions(len(windows)), strict=True)],
                column_names=_WINDOW_COLUMNS, database=self.database)
