"""Data quality end to end on the embedded stack, as a stranger sees it: a plain Kafka
producer sends the README's JSON envelopes, some with bad values, a feature gone, a
feature new and request ids repeated; the alerts topic and ClickHouse (read over plain
HTTP) say what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from stranger import http_rows, read_alerts

from driftline.models.drift.reference_build import build_profile
from driftline.streams.reference.profiles import publish_profile
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
N = 1000
WINDOWS = 20
BAD = range(8, 12)  # windows 8..11: every problem at once, each on its own feature


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=5.0)


def healthy(rng: np.random.Generator, n: int) -> dict[str, Any]:
    return {"x": rng.normal(0.0, 1.0, n), "y": rng.gamma(2.0, 2.0, n),
            "w": np.where(rng.random(n) < 0.05, np.nan, rng.normal(5.0, 1.0, n)),
            "c": rng.choice(np.array(["a", "b", "c"], dtype=object), n)}


def envelope(w: int, rng: np.random.Generator) -> dict[str, Any]:
    columns = healthy(rng, N)
    features: dict[str, list[Any]] = {
        name: [None if isinstance(v, float) and np.isnan(v) else v for v in values.tolist()]
        for name, values in columns.items()}
    if w in BAD:
        for j in range(0, N, 50):  # 20 strings in the numeric x
            features["x"][j] = "n/a"
        for j in range(1, N, 10):  # 100 sentinels in y
            features["y"][j] = -999.0
        features["w"] = [None if j % 3 == 0 else v for j, v in enumerate(features["w"])]
        del features["c"]  # c stopped arriving
        features["z"] = [1.0] * N  # z is new
    times = np.sort(T0 + w * W + rng.integers(0, W, N)).tolist()
    # In the bad windows a tenth of the events reuse another event's request id.
    distinct = N - N // 10 if w in BAD else N
    return {"type": "prediction_batch", "model": "m", "version": "v1",
            "request_id": [f"{w}-{i % distinct}" for i in range(N)], "event_time": times,
            "features": features, "score": rng.random(N).tolist()}


async def produce(settings: Settings, rng: np.random.Generator) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for w in range(WINDOWS):
            await producer.send_and_wait(settings.predictions_topic,
                                         orjson.dumps(envelope(w, rng)), key=b"m")
        await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
            {"type": "watermark", "model": "m", "event_time": T0 + (WINDOWS + 1) * W}),
            key=b"m")
    finally:
        await producer.stop()


def test_each_problem_opens_one_incident_and_resolves_and_bad_values_keep_their_envelope(
        settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    training = healthy(rng, 20_000)
    asyncio.run(publish_profile(settings, build_profile("m", "v1", training)))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    expected = {"data_quality:m:v1:x": "invalid_share", "data_quality:m:v1:y":
                "out_of_range_increase", "data_quality:m:v1:w": "missing_increase",
                "data_quality:m:v1:c": "absent", "data_quality:m:v1:z": "unexpected",
                "data_quality:m:v1:(volume)": "duplicate_share"}
    try:
        sent_from = time.time()
        asyncio.run(produce(settings, rng))
        sent_until = time.time()
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: set(expected) <= {
            a["dedup_key"] for a in got if a["state"] == "resolved"}))
    finally:
        worker.stop()
    quality = [a for a in alerts if a["dedup_key"].startswith("data_quality:")]
    for key, metric in expected.items():
        states = [(a["state"], a["metric"]) for a in quality if a["dedup_key"] == key]
        assert states == [("open", metric), ("resolved", metric)], (key, states)
    assert len(quality) == 2 * len(expected)  # healthy windows opened nothing
    opened = {a["dedup_key"]: a for a in quality if a["state"] == "open"}
    assert {a["first_seen"] for a in opened.values()} == {T0 + BAD[0] * W}
    assert "failed a data-quality check" in opened["data_quality:m:v1:c"]["summary"]

    db = settings.clickhouse_database
    invalid = http_rows(settings, (
        f"SELECT toUnixTimestamp64Milli(window_start) AS start, affected, events "
        f"FROM {db}.data_quality FINAL WHERE feature = 'x' AND check = 'invalid_share' "
        f"ORDER BY start"))
    assert {r["start"]: (int(r["affected"]), int(r["events"])) for r in invalid} == {
        T0 + w * W: (20 if w in BAD else 0, N) for w in range(WINDOWS)}
    # The envelopes with bad values kept their other events, exactly.
    counts = http_rows(settings, (
        f"SELECT feature, sum(count) AS count, sum(invalid_count) AS invalid "
        f"FROM {db}.feature_windows FINAL WHERE feature IN ('x', 'y') GROUP BY feature "
        f"ORDER BY feature"))
    assert [(r["feature"], int(r["count"]), int(r["invalid"])) for r in counts] == [
        ("x", WINDOWS * N, 20 * len(BAD)), ("y", WINDOWS * N, 0)]
    letters = http_rows(settings, f"SELECT count() AS n FROM {db}.dead_letters FINAL")
    assert int(letters[0]["n"]) == 0
    bad_verdicts = http_rows(settings, (
        f"SELECT DISTINCT feature, check FROM {db}.data_quality FINAL "
        f"WHERE verdict IN ('warning', 'critical') ORDER BY feature, check"))
    assert {(r["feature"], r["check"]) for r in bad_verdicts} == {
        ("x", "invalid_share"), ("y", "out_of_range_increase"), ("w", "missing_increase"),
        ("c", "absent"), ("z", "unexpected"), ("(volume)", "duplicate_share")}
    repeated = {int(r["start"]): float(r["observed"]) for r in http_rows(settings, (
        f"SELECT toUnixTimestamp64Milli(window_start) AS start, observed "
        f"FROM {db}.data_quality FINAL WHERE check = 'duplicate_share'"))}
    for w in range(WINDOWS):  # the sketch's estimate: exact to about 1.6 %
        assert repeated[T0 + w * W] == pytest.approx(0.1 if w in BAD else 0.0, abs=0.03)

    # Timeliness from the broker's own timestamps: events reached Kafka while the test sent
    # them (their event times are from 2025), and waited for the worker a moment.
    timeliness = {(r["check"], int(r["start"])): float(r["value"]) for r in http_rows(settings, (
        f"SELECT check, toUnixTimestamp64Milli(window_start) AS start, value "
        f"FROM {db}.data_quality FINAL WHERE feature = '(timeliness)'"))}
    for w in range(WINDOWS):
        start = T0 + w * W
        p50 = timeliness[("event_delay_p50_seconds", start)]
        # (the sketch's 1 % relative error is wide on a year)
        assert sent_from - (start + W) / 1000 - 1 <= p50 * 1.01
        assert p50 * 0.99 <= sent_until - start / 1000 + 1
        assert 0 <= timeliness[("processing_delay_max_seconds", start)] < 120
        assert timeliness[("late_share", start)] == 0.0
