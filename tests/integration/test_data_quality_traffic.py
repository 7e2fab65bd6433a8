"""Data-quality problems of the traffic itself, end to end on the embedded stack: values
outside a range the rules declare, a sudden drop in volume, events arriving after their
window closed, and a model gone silent while its partition flows. A plain Kafka producer
sends the README's JSON; each problem opens exactly one incident of its kind, which
resolves when the problem stops, and the healthy windows around them open nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from stranger import http_rows, read_alerts

from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
N = 1000
WINDOWS = 30
OUTSIDE = range(6, 9)  # a's x: a tenth of its values outside its declared [0, 1]
QUIET = range(13, 16)  # a sends a fifth of its usual traffic
LATE = range(20, 23)  # a's events of three windows ago arrive (150 a window)
SILENT = range(9, 17)  # b sends nothing


@pytest.fixture
def settings(worker_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.toml"
    rules.write_text('[models."a".features.x]\nrange = [0, 1]\n', "utf-8")
    # One partition: b's silence is judged against a, which flows on.
    return worker_settings(reference_wait_seconds=2.0, partitions=1, rules_file=str(rules))


def envelope(model: str, w: int, n: int, rng: np.random.Generator, *,
             outside: bool = False, start: int | None = None) -> dict[str, Any]:
    x = rng.random(n)
    if outside:
        x[: n // 10] = 1.5
    begin = T0 + (w if start is None else start) * W
    times = np.sort(begin + rng.integers(0, W, n)).tolist()
    tag = "late" if start is not None else "on-time"
    return {"type": "prediction_batch", "model": model, "version": "v1",
            "request_id": [f"{model}-{tag}-{w}-{i}" for i in range(n)], "event_time": times,
            "features": {"x": x.tolist(), "k": rng.choice(["p", "q"], n).tolist()}}


async def produce(settings: Settings, rng: np.random.Generator) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()

    async def send(doc: dict[str, Any]) -> None:
        await producer.send_and_wait(settings.predictions_topic, orjson.dumps(doc),
                                     key=doc["model"].encode())

    try:
        for w in range(WINDOWS):
            await send(envelope("a", w, N // 5 if w in QUIET else N, rng, outside=w in OUTSIDE))
            if w not in SILENT:
                await send(envelope("b", w, N, rng))
            if w in LATE:  # long after window w - 3 closed
                await send(envelope("a", w, 150, rng, start=w - 3))
        for model in ("a", "b"):
            await send({"type": "watermark", "model": model,
                        "event_time": T0 + (WINDOWS + 1) * W})
    finally:
        await producer.stop()


def test_traffic_problems_each_open_one_incident_that_resolves(settings: Settings,
                                                               tmp_path: Path) -> None:
    expected = {"data_quality:a:v1:x": "out_of_declared_range",
                "data_quality:a:v1:(volume)": "volume_drop",
                "data_quality:a:v1:(timeliness)": "late_share",
                "data_quality:b:v1:(silence)": "silent_windows"}
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(produce(settings, np.random.default_rng(8)))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: set(expected) <= {
            a["dedup_key"] for a in got if a["state"] == "resolved"}))
        db = settings.clickhouse_database
        outside = http_rows(settings, (
            f"SELECT toUnixTimestamp64Milli(window_start) AS start, affected, events "
            f"FROM {db}.data_quality FINAL WHERE model = 'a' AND feature = 'x' "
            f"AND check = 'out_of_declared_range' ORDER BY start"))
        late = http_rows(settings, (
            f"SELECT toUnixTimestamp64Milli(window_start) AS start, observed "
            f"FROM {db}.data_quality FINAL WHERE model = 'a' AND check = 'late_share' "
            f"AND observed > 0 ORDER BY start"))
    finally:
        worker.stop()
    quality = [a for a in alerts if a["dedup_key"].startswith("data_quality:")]
    for key, metric in expected.items():
        states = [(a["state"], a["metric"]) for a in quality if a["dedup_key"] == key]
        assert states == [("open", metric), ("resolved", metric)], (key, states)
    assert len(quality) == 2 * len(expected), [a["dedup_key"] for a in quality]
    first_seen = {a["dedup_key"]: (a["first_seen"] - T0) // W for a in quality
                  if a["state"] == "open"}
    assert first_seen == {"data_quality:a:v1:x": OUTSIDE[0],
                          "data_quality:a:v1:(volume)": QUIET[0],
                          "data_quality:b:v1:(silence)": SILENT[0],
                          # late events count in the window that closes after they came
                          "data_quality:a:v1:(timeliness)": LATE[0]}
    # Counted exactly: a tenth of x outside [0, 1] in those windows, none elsewhere.
    assert {(int(r["start"]) - T0) // W: int(r["affected"]) for r in outside
            if int(r["affected"])} == {w: N // 10 for w in OUTSIDE}
    assert [(int(r["start"]) - T0) // W for r in late] == list(LATE)
    assert all(r["observed"] == pytest.approx(150 / (150 + N)) for r in late)
