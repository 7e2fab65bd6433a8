"""The retraining loop end to end: a feature of a model with a published training reference
shifts; the drift incident meets the rules file's retraining policy, and one request, with
the drifted features and the reference as evidence, goes to the retraining topic, to
ClickHouse and, as an Airflow DAG run, to a real local HTTP server that fails at first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from stranger import PostServer, http_rows, read_alerts

from driftline.models.drift.reference_build import build_profile
from driftline.streams.reference.profiles import publish_profile
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
N = 1500
SHIFTED = range(3, 9)


class DagRuns:
    """An Airflow-like endpoint: 503 to the first request, then 200 for a new dag_run_id
    and 409 for one it has seen."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.answers: list[int] = []
        self.http = PostServer(self.answer)
        self.url = f"{self.http.url}/api/v1/dags/retrain/dagRuns"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        doc = orjson.loads(body)
        if not self.answers:
            status = 503
        elif doc["dag_run_id"] in self.runs:
            status = 409
        else:
            self.runs[doc["dag_run_id"]] = doc
            status = 200
        self.answers.append(status)
        return status


@pytest.fixture
def airflow() -> Iterator[DagRuns]:
    runs = DagRuns()
    with runs.http:
        yield runs


@pytest.fixture
def settings(worker_settings: Callable[..., Settings], airflow: DagRuns,
             tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.toml"
    rules.write_text('[retraining]\nenabled = true\nmin_open_minutes = 1\n', "utf-8")
    return worker_settings(reference_wait_seconds=5.0, rules_file=str(rules),
                           retraining_webhooks=orjson.dumps(
                               [{"url": airflow.url, "format": "airflow"}]).decode())


def sample(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    return {"x": rng.normal(shift, 1.0, n), "y": rng.gamma(2.0, 2.0, n)}


async def stream(settings: Settings, rng: np.random.Generator) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for w in range(16):
            columns = sample(rng, N, 2.0 if w in SHIFTED else 0.0)
            times = np.sort(T0 + w * W + rng.integers(0, W, N)).tolist()
            await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
                {"type": "prediction_batch", "model": "m", "version": "v1",
                 "request_id": [f"{w}-{i}" for i in range(N)], "event_time": times,
                 "features": {k: v.tolist() for k, v in columns.items()}}), key=b"m")
        await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
            {"type": "watermark", "model": "m", "event_time": T0 + 18 * W}), key=b"m")
    finally:
        await producer.stop()


async def requests_on_topic(settings: Settings) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(settings.retraining_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            found += [orjson.loads(r.value) | {"_key": r.key.decode()} for r in records]
        return found
    finally:
        await consumer.stop()


def test_a_drift_incident_makes_one_retraining_request_with_its_evidence(
        settings: Settings, airflow: DagRuns, tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    profile = build_profile("m", "v1", sample(rng, 20_000, 0.0))
    asyncio.run(publish_profile(settings, profile))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(stream(settings, rng))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: any(
            a["state"] == "resolved" for a in got), wait_seconds=120))
        deadline = time.monotonic() + 30
        while not airflow.runs and time.monotonic() < deadline:
            time.sleep(0.5)
        on_topic = asyncio.run(requests_on_topic(settings))
        stored = http_rows(settings, (
            "SELECT id, model_version, label_coverage, request FROM "
            f"{settings.clickhouse_database}.retraining_requests FINAL"))
    finally:
        worker.stop()
    opened = [a for a in alerts if a["state"] == "open" and a["dedup_key"].startswith("drift:")]
    assert [a["feature"] for a in opened] == ["x"]
    (request,) = on_topic  # one incident, one request (its resolve asks for nothing)
    assert request["_key"] == "m" and request["type"] == "retraining_request"
    assert request["incident"]["id"] == opened[0]["id"]
    assert request["window_start"] == T0 + SHIFTED[0] * W
    assert {d["feature"] for d in request["drifted_features"]} == {"x"}
    assert max(d["value"] for d in request["drifted_features"] if d["metric"] == "psi") > 0.25
    assert request["reference_id"] == profile.profile_id
    assert request["label_coverage"] == 0.0  # no labels came (the policy did not ask any)
    assert [(r["id"], r["model_version"]) for r in stored] == [(request["id"], "v1")]
    assert orjson.loads(stored[0]["request"])["id"] == request["id"]
    # Airflow got one DAG run, after one failed try, whose id is the request's.
    assert airflow.answers[:2] == [503, 200]
    assert list(airflow.runs) == [request["id"]]
    assert airflow.runs[request["id"]]["conf"]["drifted_features"] == request["drifted_features"]
