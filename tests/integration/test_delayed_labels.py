"""Delayed labels end to end on the embedded stack: predictions through the publisher,
labels minutes to days later, out of order, duplicated, corrected, some never, and a
worker restart between predictions and labels; each labelled prediction lands once, and
each window's performance row holds exactly the metrics, coverage and delays of its
labelled predictions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from driftline.models.quality.performance import DelayHistogram
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
MINUTE, DAY = 60_000, 86_400_000


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=2.0, label_ttl_seconds=3 * 24 * 3600)



def scenario(seed: int) -> tuple[list[tuple[str, int, str]], list[tuple[str, int, str]],
                                 dict[str, tuple[str, int]]]:
    """Predictions (id, time, class), labels to send in order, and the expected pairs."""
    rng = np.random.default_rng(seed)
    predictions = [(f"r{i}", T0 + int(rng.integers(0, 3 * W)), str(rng.choice(["fraud", "ok"])))
                   for i in range(300)]
    labels: list[tuple[str, int, str]] = []
    expected: dict[str, tuple[str, int]] = {}
    for rid, t, _ in predictions:
        kind = rng.random()
        value = str(rng.choice(["fraud", "ok"]))
        delay = int(rng.choice([MINUTE, 30 * MINUTE, DAY, 2 * DAY]))
        if kind < 0.15:  # never labelled
            continue
        if kind < 0.2:  # labelled after the time-to-live: expired
            labels.append((rid, t + 4 * DAY, value))
            continue
        labels.append((rid, t + delay, value))
        expected[rid] = (value, delay)
        if kind < 0.3:  # the same label again
            labels.append((rid, t + delay, value))
        elif kind < 0.4:  # a correction, later in the log
            fixed = "ok" if value == "fraud" else "fraud"
            labels.append((rid, t + delay + MINUTE, fixed))
            expected[rid] = (fixed, delay + MINUTE)
    # Requests in random order; each request's own labels in order (corrections come later).
    groups: dict[str, list[tuple[str, int, str]]] = {}
    for label in labels:
        groups.setdefault(label[0], []).append(label)
    shuffled = [label for rid in rng.permutation(list(groups)) for label in groups[str(rid)]]
    return predictions, shuffled, expected


async def publish(settings: Settings, predictions: list[tuple[str, int, str]] | None = None,
                  labels: list[tuple[str, int, str]] | None = None) -> None:
    async with AsyncPublisher.from_settings(settings) as publisher:
        for rid, t, value in predictions or []:
            assert publisher.log_prediction("scorer", "v1", rid, {"x": 1.0}, prediction=value,
                                            event_time_ms=t)
        for i, (rid, t, value) in enumerate(labels or []):
            assert publisher.log_label("scorer", rid, value, event_time_ms=t)
            if i % 50 == 49:
                await publisher.flush()
        await publisher.flush()


def labelled(client: Client, db: str) -> dict[str, tuple[str, int]]:
    if not client.query(f"EXISTS TABLE {db}.labeled_predictions").result_rows[0][0]:
        return {}
    rows = client.query(f"SELECT request_id, label, toUnixTimestamp64Milli(label_time) - "
                        f"toUnixTimestamp64Milli(prediction_time) "
                        f"FROM {db}.labeled_predictions FINAL WHERE expired = 0").result_rows
    return {rid: (label, delay) for rid, label, delay in rows}


def test_each_labelled_prediction_lands_once_with_its_latest_label(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    predictions, labels, expected = scenario(3)
    early = labels[:40]  # some labels come before their prediction
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        asyncio.run(publish(settings, labels=early))
        time.sleep(2)
        asyncio.run(publish(settings, predictions=predictions))
        time.sleep(3)
    finally:
        first.kill()  # a crash between the predictions and most labels
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        asyncio.run(publish(settings, labels=labels[40:]))
        deadline = time.monotonic() + 90
        got: dict[str, tuple[str, int]] = {}
        while time.monotonic() < deadline:
            got = labelled(clickhouse, settings.clickhouse_database)
            rows = performance_rows(clickhouse, settings.clickhouse_database)
            if got == expected and settled(rows, predictions, labels, expected):
                break
            assert second.is_running(), second.log_tail()
            time.sleep(1)
        time.sleep(2)  # anything still arriving would show now
        got = labelled(clickhouse, settings.clickhouse_database)
        rows = performance_rows(clickhouse, settings.clickhouse_database)
        in_range = readme_range_query(clickhouse, settings.clickhouse_database)
    finally:
        second.stop()
    assert set(got) == set(expected)
    assert got == expected
    assert_performance(rows, predictions, labels, expected)
    assert_range(in_range, predictions, expected)


def readme_range_query(client: Client, db: str) -> dict[str, float]:
    """The README's "any time range" query, run on this test's database and model."""
    text = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    blocks = [b.split("```")[0] for b in text.split("```sql\n")[1:]]
    (sql,) = [b for b in blocks if "sum(correct_count) / sum(n_labeled)" in b]
    sql = (sql.replace("driftline.", f"{db}.").replace("'fraud-detector'", "'scorer'")
           .replace("2026-11-27 00:00:00", "2025-11-27 08:00:00")
           .replace("2026-11-28 00:00:00", "2025-11-27 08:03:00"))
    result = client.query(sql.rstrip().rstrip(";"))
    (row,) = result.result_rows
    return dict(zip(result.column_names, row, strict=True))


def assert_range(got: dict[str, float], predictions: list[tuple[str, int, str]],
                 expected: dict[str, tuple[str, int]]) -> None:
    predicted_class = {rid: value for rid, _, value in predictions}
    pairs = [(predicted_class[rid], label) for rid, (label, _) in expected.items()]
    fraud_tp = sum(p == label == "fraud" for p, label in pairs)
    assert got["coverage"] == pytest.approx(len(expected) / len(predictions), rel=1e-12)
    assert got["accuracy"] == pytest.approx(sum(p == lb for p, lb in pairs) / len(pairs),
                                            rel=1e-12)
    assert got["precision_fraud"] == pytest.approx(
        fraud_tp / sum(p == "fraud" for p, _ in pairs), rel=1e-12)
    assert got["recall_fraud"] == pytest.approx(
        fraud_tp / sum(lb == "fraud" for _, lb in pairs), rel=1e-12)
    assert got["mean_delay_seconds"] == pytest.approx(
        np.mean([delay / 1000 for _, delay in expected.values()]), rel=1e-12)


def performance_rows(client: Client, db: str) -> dict[int, dict[str, object]]:
    result = client.query(
        "SELECT toUnixTimestamp64Milli(window_start) AS start, n_predicted, n_labeled, "
        "n_expired_labels, coverage, correct_count, accuracy, true_count, confusion, "
        "delay_sum_seconds, delay_p50_seconds, delay_p90_seconds, delay_p99_seconds, task "
        f"FROM {db}.performance FINAL WHERE model = 'scorer' ORDER BY start")
    return {row[0]: dict(zip(result.column_names, row, strict=True))
            for row in result.result_rows}


def settled(*args: Any) -> bool:
    try:
        assert_performance(*args)
    except AssertionError:
        return False
    return True


def assert_performance(rows: dict[int, dict[str, object]],
                       predictions: list[tuple[str, int, str]],
                       labels: list[tuple[str, int, str]],
                       expected: dict[str, tuple[str, int]]) -> None:
    predicted_class = {rid: value for rid, _, value in predictions}
    window_of = {rid: t - t % W for rid, t, _ in predictions}
    expired = {rid for rid, t, _ in labels if t - min(
        pt for r, pt, _ in predictions if r == rid) > 3 * DAY}
    assert sorted(rows) == sorted(set(window_of.values()))
    for start, row in rows.items():
        members = [rid for rid, w in window_of.items() if w == start]
        pairs = {rid: expected[rid] for rid in members if rid in expected}
        delays = np.array([delay / 1000 for _, delay in pairs.values()])
        right = sum(predicted_class[rid] == label for rid, (label, _) in pairs.items())
        truth = {c: n for c in ("fraud", "ok")
                 if (n := sum(label == c for label, _ in pairs.values()))}
        quantiles = DelayHistogram().add(delays).quantiles([0.5, 0.9, 0.99])
        assert row["task"] == "classification"
        assert row["n_predicted"] == len(members), start
        assert row["n_labeled"] == len(pairs)
        assert row["n_expired_labels"] == len(expired & set(members))
        assert row["coverage"] == pytest.approx(len(pairs) / len(members), abs=1e-12)
        assert row["correct_count"] == right
        assert row["accuracy"] == pytest.approx(right / len(pairs), abs=1e-12)
        assert row["true_count"] == truth
        assert sum(row["confusion"].values()) == len(pairs)  # type: ignore[attr-defined]
        assert row["delay_sum_seconds"] == pytest.approx(delays.sum(), rel=1e-12)
        assert [row["delay_p50_seconds"], row["delay_p90_seconds"],
                row["delay_p99_seconds"]] == pytest.approx(quantiles, rel=1e-9)
