"""The model registry end to end on the embedded stack: a training pipeline registers v1
(the Python call) and a deploy tool records its rollout; v2 starts serving without being
registered and is flagged; registering it (`driftline registry version`, a real process)
resolves the incident, whose alert then says what v2 was trained on and when it went live.
Both tables can be joined with everything else in SQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from stranger import http_rows, read_alerts

from driftline import Deployment, ModelVersion, publish_deployment, publish_model_version
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
N = 600
KEY = "data_quality:m:v2:(registry)"


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=5.0)


async def send_windows(settings: Settings, windows: range, rng: np.random.Generator) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for w in windows:
            for version in ("v1", "v2"):
                times = np.sort(T0 + w * W + rng.integers(0, W, N)).tolist()
                doc = {"type": "prediction_batch", "model": "m", "version": version,
                       "request_id": [f"{version}-{w}-{i}" for i in range(N)],
                       "event_time": times, "features": {"x": rng.random(N).tolist()}}
                await producer.send_and_wait(settings.predictions_topic, orjson.dumps(doc),
                                             key=b"m")
        await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
            {"type": "watermark", "model": "m", "event_time": T0 + (windows[-1] + 2) * W}),
            key=b"m")
    finally:
        await producer.stop()


def register_with_the_cli(settings: Settings) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "driftline.streams.cli", "registry", "version", "--model", "m",
         "--version", "v2", "--created-at", str(T0 - 86_400_000), "--training-run-id",
         "nightly-42", "--training-data", "warehouse.features_2025_11", "--metric",
         "auc=0.91", "--param", "max_depth=8", "--code-revision", "3f2a9c1"],
        env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=120,
        check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_an_unregistered_version_is_flagged_until_registered_and_alerts_say_what_it_is(
        settings: Settings, tmp_path: Path) -> None:
    v1 = ModelVersion("m", "v1", created_at_ms=T0 - 7 * 86_400_000, training_run_id="nightly-35",
                      training_data="warehouse.features_2025_10", reference_profile_id="p-1",
                      training_metrics={"auc": 0.93}, parameters={"max_depth": 6})
    asyncio.run(publish_model_version(settings, v1))
    asyncio.run(publish_deployment(settings, Deployment("m", "v1", "deployed", T0 - 3_600_000,
                                                        environment="prod")))
    asyncio.run(publish_deployment(settings, Deployment("m", "v2", "deployed", T0,
                                                        traffic_share=0.5, environment="prod")))
    rng = np.random.default_rng(2)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(send_windows(settings, range(0, 6), rng))
        opened = asyncio.run(read_alerts(settings, worker, lambda got: any(
            a["dedup_key"] == KEY for a in got), wait_seconds=90))
        printed = register_with_the_cli(settings)
        time.sleep(2)  # the worker follows the registry topic
        asyncio.run(send_windows(settings, range(6, 12), rng))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: any(
            a["dedup_key"] == KEY and a["state"] == "resolved" for a in got), wait_seconds=90))
        db = settings.clickhouse_database
        versions = http_rows(settings, (
            f"SELECT model_version, training_run_id, training_data, training_metrics, "
            f"parameters FROM {db}.model_versions FINAL ORDER BY model_version"))
        # Every window can be joined with its version's metadata and deployment.
        joined = http_rows(settings, (
            f"SELECT w.model_version AS version, count() AS windows, "
            f"any(v.training_run_id) AS run, any(d.traffic_share) AS share "
            f"FROM {db}.feature_windows AS w FINAL "
            f"LEFT JOIN {db}.model_versions AS v FINAL "
            f"  ON v.model = w.model AND v.model_version = w.model_version "
            f"LEFT JOIN {db}.deployments AS d FINAL "
            f"  ON d.model = w.model AND d.model_version = w.model_version "
            f"WHERE w.feature = 'x' GROUP BY version ORDER BY version"))
    finally:
        worker.stop()
    assert "registered m v2" in printed
    first = [a for a in opened if a["dedup_key"] == KEY]
    assert [a["state"] for a in first] == ["open"]
    assert first[0]["metric"] == "unregistered_version"
    assert not any(a["dedup_key"].startswith("data_quality:m:v1:") for a in alerts)
    (resolved,) = [a for a in alerts if a["dedup_key"] == KEY and a["state"] == "resolved"]
    # Once registered, the alert says what v2 is: its rollout and its training.
    assert "deployed to prod 2025-11-27 08:00 UTC, 50% of traffic" in resolved["summary"]
    assert "trained on warehouse.features_2025_11 (run nightly-42)" in resolved["summary"]
    assert [(r["model_version"], r["training_run_id"]) for r in versions] == [
        ("v1", "nightly-35"), ("v2", "nightly-42")]
    assert versions[1]["training_metrics"] == {"auc": 0.91}
    assert versions[0]["parameters"] == {"max_depth": "6"}
    by_version: dict[str, dict[str, Any]] = {r["version"]: r for r in joined}
    assert by_version["v1"]["run"] == "nightly-35" and by_version["v2"]["share"] == 0.5
    assert int(by_version["v2"]["windows"]) == 12
