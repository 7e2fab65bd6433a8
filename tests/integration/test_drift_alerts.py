"""Drift end to end on the embedded stack: publish a training reference, stream stationary
then shifted then stationary data, and read the alerts topic and ClickHouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client

from driftline.models.drift.reference_build import build_profile
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.reference.profiles import publish_profile
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
PER_WINDOW = 1500
SHIFTED = range(3, 7)  # windows 3..6 of 13: x moves by one standard deviation


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=5.0)



def sample(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    return {"x": rng.normal(shift, 1.0, n), "y": rng.gamma(2.0, 2.0, n),
            "c": rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2])}


async def stream(settings: Settings, rng: np.random.Generator,
                 windows: range = range(13)) -> None:
    async with AsyncPublisher.from_settings(settings) as publisher:
        for w in windows:
            columns = sample(rng, PER_WINDOW, 1.0 if w in SHIFTED else 0.0)
            times = np.sort(T0 + w * W + rng.integers(0, W, PER_WINDOW))
            for i in range(PER_WINDOW):
                publisher.log_prediction("scorer", "v1", f"{w}-{i}",
                                         {k: v[i] for k, v in columns.items()},
                                         event_time_ms=int(times[i]))
                if i % 250 == 249:
                    await publisher.flush()
        await publisher.flush()


async def read_alerts(settings: Settings, until: float) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    alerts: list[dict[str, Any]] = []
    try:
        while time.monotonic() < until and not any(a["state"] == "resolved" for a in alerts):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                alerts += [orjson.loads(r.value) | {"_key": r.key} for r in records]
        # Anything else that was on its way.
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            alerts += [orjson.loads(r.value) | {"_key": r.key} for r in records]
    finally:
        await consumer.stop()
    return alerts


def test_a_shift_opens_one_alert_for_the_shifted_feature_and_resolves_it(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    training = sample(rng, 20_000, 0.0)
    asyncio.run(publish_profile(settings, build_profile("scorer", "v1", training)))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(stream(settings, rng))
        alerts = asyncio.run(read_alerts(settings, time.monotonic() + 120))
        assert any(a["state"] == "resolved" for a in alerts), worker.log_tail()
    finally:
        worker.stop()
    # One incident for the shifted feature, opened once and resolved once.
    assert [a["feature"] for a in alerts if a["state"] == "open"] == ["x"]
    assert [a["state"] for a in alerts if a["state"] != "escalated"] == ["open", "resolved"]
    assert len({a["id"] for a in alerts}) == 1
    assert alerts[0]["dedup_key"] == "drift:scorer:v1:x"
    assert all(a["_key"] == b"scorer" for a in alerts)
    opened = next(a for a in alerts if a["state"] == "open")
    assert T0 + 3 * W <= opened["first_seen"] <= T0 + 4 * W  # from the first shifted window
    db = settings.clickhouse_database
    stored = clickhouse.query(f"SELECT feature, state FROM {db}.alerts FINAL").result_rows
    assert sorted(stored) == [("x", "open"), ("x", "resolved")]
    verdicts = dict(clickhouse.query(
        f"SELECT toUnixTimestamp64Milli(window_start), max(verdict) FROM {db}.drift_scores FINAL "
        f"WHERE feature = 'x' AND metric = 'psi' GROUP BY 1 ORDER BY 1").result_rows)
    assert {verdicts[T0 + w * W] for w in SHIFTED} <= {"warning", "critical"}
    assert verdicts[T0 + 9 * W] == "ok"
    quiet = clickhouse.query(
        f"SELECT count() FROM {db}.drift_scores FINAL WHERE feature != 'x' "
        f"AND verdict IN ('warning', 'critical')").result_rows[0][0]
    assert quiet == 0


PSI_SQL = """
WITH
  (SELECT JSONExtract(profile, 'features', {feature:String}, 'counts', 'Array(Float64)')
   FROM {db:Identifier}.references FINAL
   WHERE model = {model:String} AND model_version = {version:String}) AS ref,
  (SELECT sumForEach(bin_counts) FROM {db:Identifier}.feature_windows FINAL
   WHERE model = {model:String} AND model_version = {version:String}
     AND feature = {feature:String}
     AND window_start >= {start:DateTime64(3)} AND window_start < {end:DateTime64(3)}) AS win,
  1e-4 AS s,
  arrayMap(c -> (c / arraySum(ref) + s) / (1 + length(ref) * s), ref) AS p,
  arrayMap(c -> (c / arraySum(win) + s) / (1 + length(win) * s), win) AS q
SELECT arraySum(arrayMap((a, b) -> (b - a) * log(b / a), p, q)) AS psi
"""


def test_the_readme_sql_reproduces_psi_from_stored_histograms(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    asyncio.run(publish_profile(settings, build_profile("scorer", "v1",
                                                        sample(rng, 20_000, 0.0))))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(stream(settings, rng))
        db = settings.clickhouse_database
        deadline = time.monotonic() + 90
        query = (f"SELECT toUnixTimestamp64Milli(window_start), value FROM {db}.drift_scores "
                 "FINAL WHERE feature = 'x' AND metric = 'psi' ORDER BY window_start")
        while time.monotonic() < deadline:
            stored = dict(clickhouse.query(query).result_rows) if _has_scores(clickhouse, db) \
                else {}
            if len(stored) >= 13:
                break
            time.sleep(0.5)
        assert len(stored) >= 13, worker.log_tail()
    finally:
        worker.stop()
    for w in (2, 4):  # a stationary and a shifted window
        start = T0 + w * W
        params = {"db": db, "model": "scorer", "version": "v1", "feature": "x",
                  "start": start / 1000, "end": (start + W) / 1000}
        (psi,), = clickhouse.query(PSI_SQL, parameters=params).result_rows
        assert psi == pytest.approx(stored[start], rel=1e-9)


def _has_scores(client: Client, db: str) -> bool:
    return bool(client.query(f"EXISTS TABLE {db}.drift_scores").result_rows[0][0])


def test_a_reference_published_to_a_running_worker_applies_from_the_next_window(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    db = settings.clickhouse_database
    sources = (f"SELECT toUnixTimestamp64Milli(window_start), any(reference_source) "
               f"FROM {db}.drift_scores FINAL WHERE feature = 'x' GROUP BY 1 ORDER BY 1")
    try:
        asyncio.run(stream(settings, rng, range(8)))  # windows 0-4 become the baseline
        wait_for(lambda: len(_rows(clickhouse, db, sources)) >= 2, worker)
        asyncio.run(publish_profile(settings, build_profile("scorer", "v1",
                                                            sample(rng, 20_000, 0.0))))
        time.sleep(3)  # the worker's reference reader polls every half second
        asyncio.run(stream(settings, rng, range(8, 13)))
        wait_for(lambda: len(_rows(clickhouse, db, sources)) >= 8, worker)
    finally:
        worker.stop()
    by_window = dict(_rows(clickhouse, db, sources))
    assert by_window[T0 + 5 * W] == "baseline"
    assert by_window[T0 + 12 * W] == "training"


def _rows(client: Client, db: str, query: str) -> list[tuple[Any, ...]]:
    if not client.query(f"EXISTS TABLE {db}.drift_scores").result_rows[0][0]:
        return []
    return list(client.query(query).result_rows)


def wait_for(condition: Any, worker: WorkerProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, worker.log_tail()
        assert worker.is_running(), worker.log_tail()
        time.sleep(0.5)


def test_incident_state_survives_a_worker_crash(settings: Settings, clickhouse: Client,
                                                tmp_path: Path) -> None:
    """One bad window before a SIGKILL, more after: the incident's first_seen is the window
    before the crash, so the half-built incident came back from the checkpoint."""
    rng = np.random.default_rng(21)
    asyncio.run(publish_profile(settings, build_profile("scorer", "v1",
                                                        sample(rng, 20_000, 0.0))))
    db = settings.clickhouse_database
    judged = (f"SELECT toUnixTimestamp64Milli(window_start), any(verdict) FROM {db}.drift_scores "
              f"FINAL WHERE feature = 'x' AND metric = 'psi' GROUP BY 1 ORDER BY 1")
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        asyncio.run(stream(settings, rng, range(5)))  # window 3 shifted; 4 opens, closes 3
        wait_for(lambda: dict(_rows(clickhouse, db, judged)).get(T0 + 3 * W)
                 in ("warning", "critical"), first)
    finally:
        first.kill()
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        asyncio.run(stream(settings, rng, range(5, 13)))
        alerts = asyncio.run(read_alerts(settings, time.monotonic() + 120))
        assert any(a["state"] == "resolved" for a in alerts), second.log_tail()
    finally:
        second.stop()
    opened = [a for a in alerts if a["state"] == "open"]
    assert [a["feature"] for a in opened] == ["x"]
    assert opened[0]["first_seen"] == T0 + 3 * W
