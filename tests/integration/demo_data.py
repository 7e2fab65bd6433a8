"""The demo's data in the embedded ClickHouse, filled once per test session: its traffic,
telemetry and traces through a real worker (the demo's shape with fewer events), for the
tests that read what a user would look at (the web page, the Grafana panels)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from driftline.streams.demo.sources import send_demo
from driftline.streams.demo.traffic import MODELS, TrafficPlan
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

T0 = 1_764_230_400_000
# The demo's shape (14 windows, fraud-detector v2 shifted in windows 7..9, the churn
# model's service slow in 8..10) with fewer events, as in test_demo_traffic.py.
PLAN = TrafficPlan(windows=14, events_per_window=2_500, shift_at=0.5, shift_until=0.75,
                   start_ms=T0)
#: Features, outputs and service measures per model version, as the demo sends them.
FEATURE_ROWS = 10
QUALITY = "performance:fraud-detector:v2:quality"
LATENCY = "service:churn-predictor:2026.11:latency"
HOP = "chain:churn-predictor::feature-store:hop_latency_p95_ratio"


def demo_settings(stack: EmbeddedStack, state_dir: Path) -> Settings:
    name = uuid.uuid4().hex[:8]
    topics = ("predictions", "labels", "dead_letter", "alerts", "references", "telemetry",
              "lineage", "pipelines", "traces", "service_chains", "service_hops", "registry",
              "retraining")
    made = Settings().replace(
        **stack.settings_overrides(),
        **{f"{topic}_topic": f"{topic.replace('_', '-')}-{name}" for topic in topics},
        clickhouse_database=f"t_{name}", app_id=f"driftline-{name}",
        state_dir=str(state_dir), partitions=2, idle_close_seconds=2.0,
        checkpoint_seconds=0.5, reference_wait_seconds=2.0, judge_after_seconds=120,
        outcome_judge_after_seconds=120)
    asyncio.run(ensure_topics(made))
    return made


def fill(settings: Settings, log_dir: Path) -> None:
    """Run a worker over the demo's traffic until its windows, scores and alerts are in."""
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_url)
    worker = WorkerProcess(settings, log_dir / "worker.log").start()
    try:
        asyncio.run(_publish(settings))
        deadline = time.monotonic() + 150
        while not _arrived(client, settings.clickhouse_database):
            assert worker.is_running(), worker.log_tail()
            assert time.monotonic() < deadline, "the demo's results did not all arrive"
            time.sleep(1)
        time.sleep(3 * settings.checkpoint_seconds)  # anything else on its way
    finally:
        worker.stop()
        client.close()


async def _publish(settings: Settings) -> None:
    await send_demo(settings, dataclasses.replace(PLAN, window_ms=settings.window_ms))


def _arrived(client: Client, db: str) -> bool:
    if not client.query(f"EXISTS TABLE {db}.alerts").result_rows[0][0]:
        return False
    (windows, scores), = client.query(
        f"SELECT (SELECT count() FROM {db}.feature_windows FINAL "
        f"         WHERE window_start >= fromUnixTimestamp64Milli({T0})), "
        f"       (SELECT count() FROM {db}.drift_scores FINAL)").result_rows
    states = {tuple(row) for row in client.query(
        f"SELECT dedup_key, state FROM {db}.alerts FINAL").result_rows}
    expected = {(QUALITY, "open"), (LATENCY, "resolved"), (HOP, "resolved"),
                ("drift:fraud-detector:v2:amount", "resolved")}
    return windows >= PLAN.windows * len(MODELS) * FEATURE_ROWS and scores > 0 \
        and expected <= states
