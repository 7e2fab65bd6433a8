"""Pipelines end to end: the real OpenLineage client emits run events through its own Kafka
transport to the embedded broker; the worker stores each run, opens an incident for a
failed run that the next good run resolves, and notices an hourly job that did not run."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from openlineage.client import OpenLineageClient, event_v2
from openlineage.client.facet_v2 import error_message_run
from stranger import http_rows, read_alerts

from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

MINUTE = 60_000
FAILED = "pipeline:airflow/daily_sales::run:run_failed"
MISSED = "pipeline:airflow/hourly_refresh::run:missed_run_minutes"


@pytest.fixture
def settings(worker_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.toml"
    rules.write_text('[pipelines."airflow/hourly_*"]\nevery_minutes = 5\n', "utf-8")
    # Short windows: a scheduled job is judged at each window boundary the clock passes.
    return worker_settings(reference_wait_seconds=2.0, rules_file=str(rules), window_seconds=10)


def iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()


class Pipeline:
    """An orchestrator reporting its runs through OpenLineage's Kafka transport."""

    def __init__(self, settings: Settings) -> None:
        self.client = OpenLineageClient(config={"transport": {
            "type": "kafka", "topic": settings.lineage_topic, "flush": True,
            "config": {"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"}}})

    def run(self, job: str, run_id: str, start: int, minutes: float, end: str = "COMPLETE",
            error: str | None = None) -> None:
        def emit(state: event_v2.RunState, at: int, facets: dict[str, object]) -> None:
            self.client.emit(event_v2.RunEvent(
                eventType=state, eventTime=iso(at), producer="https://example.com/airflow",
                run=event_v2.Run(runId=run_id, facets=facets),
                job=event_v2.Job(namespace="airflow", name=job),
                outputs=[event_v2.OutputDataset(namespace="warehouse", name=f"{job}_table")]))

        emit(event_v2.RunState.START, start, {})
        facets: dict[str, object] = ({"errorMessage": error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python")} if error else {})
        emit(getattr(event_v2.RunState, end), start + int(minutes * MINUTE), facets)


def test_failed_and_missed_runs_open_incidents_from_the_clients_own_events(
        settings: Settings, tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    run_ids = [f"0195f3a4-1c2b-7d3e-8f40-00000000000{i}" for i in range(4)]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        pipeline = Pipeline(settings)
        pipeline.run("daily_sales", run_ids[0], now - 30 * MINUTE, 4, "FAIL", "disk full")
        # The hourly job ran 12 minutes ago, every 5 minutes it should: it is overdue.
        pipeline.run("hourly_refresh", run_ids[1], now - 12 * MINUTE, 1)
        opened = asyncio.run(read_alerts(settings, worker, lambda got: {FAILED, MISSED} <= {
            a["dedup_key"] for a in got}, wait_seconds=90))
        pipeline.run("daily_sales", run_ids[2], now - 10 * MINUTE, 3)  # the fix
        pipeline.run("hourly_refresh", run_ids[3], now - 3 * MINUTE, 1)  # back on schedule
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: {FAILED, MISSED} <= {
            a["dedup_key"] for a in got if a["state"] == "resolved"}, wait_seconds=90))
        pipeline.client.close()
        runs = http_rows(settings, (
            "SELECT job_name, run_id, state, duration_seconds, error_message, outputs "
            f"FROM {settings.clickhouse_database}.pipeline_runs FINAL ORDER BY job_name, run_id"))
    finally:
        worker.stop()
    first = {a["dedup_key"]: a for a in opened if a["state"] == "open"}
    assert "pipeline airflow/daily_sales: broke its SLA" in first[FAILED]["summary"]
    assert first[MISSED]["value"] >= 2  # minutes past last start + 5
    states = [(a["dedup_key"], a["state"]) for a in alerts if a["dedup_key"] in (FAILED, MISSED)]
    assert sorted(states) == sorted([(FAILED, "open"), (FAILED, "resolved"), (MISSED, "open"),
                                     (MISSED, "resolved")])
    assert [(r["job_name"], r["state"], r["error_message"]) for r in runs] == [
        ("daily_sales", "FAIL", "disk full"), ("daily_sales", "COMPLETE", ""),
        ("hourly_refresh", "COMPLETE", ""), ("hourly_refresh", "COMPLETE", "")]
    assert [round(r["duration_seconds"]) for r in runs] == [240, 180, 60, 60]
    assert runs[0]["outputs"] == ["warehouse/daily_sales_table"]


def test_a_job_that_stops_while_the_worker_restarts_is_still_noticed(
        settings: Settings, tmp_path: Path) -> None:
    rules = Path(settings.rules_file or "")
    rules.write_text('[pipelines."airflow/often_*"]\nevery_minutes = 0.5\n', "utf-8")
    now = time.time_ns() // 1_000_000
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        pipeline = Pipeline(settings)
        pipeline.run("often_sync", "0195f3a4-1c2b-7d3e-8f40-0000000000aa", now - 10_000, 0.05)
        pipeline.client.close()
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and not http_rows(settings, (
                "SELECT 1 FROM system.tables WHERE database = "
                f"'{settings.clickhouse_database}' AND name = 'pipeline_runs'"))) or not \
                http_rows(settings, f"SELECT 1 FROM {settings.clickhouse_database}."
                                    "pipeline_runs FINAL WHERE state = 'COMPLETE'"):
            time.sleep(0.5)
    finally:
        first.stop()
    # Nothing arrives on its partition again: the new worker's own watermarks move it on.
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        alerts = asyncio.run(read_alerts(settings, second, lambda got: any(
            a["dedup_key"] == "pipeline:airflow/often_sync::run:missed_run_minutes"
            for a in got), wait_seconds=120))
    finally:
        second.stop()
    missed = [a for a in alerts if a["metric"] == "missed_run_minutes"]
    assert [a["state"] for a in missed] == ["open"]
