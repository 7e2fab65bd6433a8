"""Business outcomes end to end on the embedded stack: two versions of a model serve side
by side through the publisher, their outcomes (converted, revenue) come seconds to a minute
later, some before their prediction, some twice, some corrected; ClickHouse (over plain
HTTP) holds exact per-window sums, and the alerts topic flags a challenger made worse on
purpose, against its champion, while an equal challenger next to it raises nothing."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from stranger import http_rows, read_alerts

from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
N = 1000  # predictions per version and window
WINDOWS = 16
#: Conversion rates: "shop" v2 converts 30 % less than v1; "twin" v2 as well as v1.
RATES = {("shop", "v1"): 0.10, ("shop", "v2"): 0.07, ("twin", "v1"): 0.10, ("twin", "v2"): 0.10}
Key = tuple[str, str, int, str]  # model, version, window start, outcome


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=2.0, outcome_judge_after_seconds=120)


def traffic(seed: int) -> tuple[list[tuple[str, str, str, int]],
                                list[tuple[str, str, int, dict[str, Any]]]]:
    """Predictions (model, version, request id, time) and outcome reports (model, request id,
    time, outcomes) in event-time order; v2 starts a window after v1."""
    rng = np.random.default_rng(seed)
    predictions, reports = [], []
    for (model, version), rate in RATES.items():
        for w in range(0 if version == "v1" else 1, WINDOWS):
            times = np.sort(T0 + w * W + rng.integers(0, W, N))
            for i, t in enumerate(times.tolist()):
                rid = f"{version}-{w}-{i}"
                predictions.append((model, version, rid, t))
                delay = int(rng.integers(1_000, 60_000))
                if rng.random() < rate:
                    revenue = round(float(rng.lognormal(3.0, 0.5)), 2)
                    reports.append((model, rid, t + delay, {"converted": True,
                                                           "revenue": revenue}))
                    if rng.random() < 0.05:  # a correction: the refund of part of it
                        reports.append((model, rid, t + delay + 5_000,
                                        {"revenue": round(revenue / 2, 2)}))
                    elif rng.random() < 0.05:  # the same report again
                        reports.append((model, rid, t + delay, {"converted": True,
                                                               "revenue": revenue}))
                elif rng.random() < 0.3:  # some sources also say when nothing happened
                    reports.append((model, rid, t + delay, {"converted": False}))
    predictions.sort(key=lambda p: p[3])
    reports.sort(key=lambda r: r[2])
    return predictions, reports


def expected_sums(predictions: list[tuple[str, str, str, int]],
                  reports: list[tuple[str, str, int, dict[str, Any]]]) -> dict[Key, tuple]:
    """Per window and outcome: (n_predicted, n_reported, total, sum of squares, positive),
    each request's latest report of each outcome counted once."""
    latest: dict[tuple[str, str, str], float] = {}
    for model, rid, _, outcomes in reports:
        for name, value in outcomes.items():
            latest[(model, rid, name)] = float(value)
    where = {(m, rid): (v, t - t % W) for m, v, rid, t in predictions}
    n_predicted: dict[tuple[str, str, int], int] = defaultdict(int)
    for m, v, _, t in predictions:
        n_predicted[(m, v, t - t % W)] += 1
    values: dict[Key, list[float]] = defaultdict(list)
    for (m, rid, name), value in latest.items():
        version, start = where[(m, rid)]
        values[(m, version, start, name)].append(value)
    return {key: (n_predicted[key[:3]], len(v), sum(v), sum(x * x for x in v),
                  sum(x != 0 for x in v)) for key, v in values.items()}


async def publish(settings: Settings, predictions: list[tuple[str, str, str, int]] = (),
                  reports: list[tuple[str, str, int, dict[str, Any]]] = ()) -> None:
    async with AsyncPublisher.from_settings(settings) as publisher:
        for model, version, rid, t in predictions:
            assert publisher.log_prediction(model, version, rid, {"x": 1.0}, event_time_ms=t)
        for i, (model, rid, t, outcomes) in enumerate(reports):
            assert publisher.log_outcome(model, rid, outcomes, event_time_ms=t)
            if i % 500 == 499:  # in event-time order: a window is judged once it is complete
                await publisher.flush()
        await publisher.flush()


async def send(settings: Settings, topic: str, *docs: dict[str, Any]) -> None:
    """``docs`` as a plain Kafka producer sends the README's JSON, keyed by model."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for doc in docs:
            await producer.send_and_wait(topic, orjson.dumps(doc), key=doc["model"].encode())
    finally:
        await producer.stop()


def watermarks(event_time: int) -> list[dict[str, Any]]:
    return [{"type": "watermark", "model": model, "event_time": event_time}
            for model in ("shop", "twin")]


def stored_sums(settings: Settings) -> dict[Key, tuple]:
    rows = http_rows(settings, (
        "SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS start, outcome, "
        "n_predicted, n_reported, total, sum_squares, positive "
        f"FROM {settings.clickhouse_database}.outcomes FINAL"))
    return {(r["model"], r["model_version"], int(r["start"]), r["outcome"]):
            (None if r["n_predicted"] is None else int(r["n_predicted"]), int(r["n_reported"]),
             r["total"], r["sum_squares"], int(r["positive"])) for r in rows}


def same(got: dict[Key, tuple], expected: dict[Key, tuple]) -> bool:
    return got.keys() == expected.keys() and all(
        got[k][:2] == e[:2] and got[k][4] == e[4]
        and got[k][2:4] == pytest.approx(e[2:4], rel=1e-12, abs=1e-9)
        for k, e in expected.items())


def test_outcomes_sum_exactly_and_a_worse_challenger_is_flagged_an_equal_one_not(
        settings: Settings, tmp_path: Path) -> None:
    predictions, reports = traffic(11)
    first_window = [r for r in reports if r[2] < T0 + W and r[0] == "shop"][:20]
    quiet = next(rid for m, v, rid, t in predictions if m == "shop" and rid not in {
        r[1] for r in reports})  # no outcome reported yet
    at = next(t for *_, rid, t in predictions if rid == quiet) + 30_000
    odd = {"type": "outcome", "model": "shop", "request_id": quiet, "event_time": at,
           "outcomes": {"converted": True, "revenue": "12.50"}}
    counted = [*reports, ("shop", quiet, at, {"converted": True})]  # what counts of it
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    wanted = {f"outcome:shop:v2:outcome.{name}:challenger_test"
              for name in ("converted", "revenue")}
    try:
        asyncio.run(publish(settings, reports=first_window))  # before their predictions
        asyncio.run(publish(settings, predictions=predictions))
        asyncio.run(send(settings, settings.predictions_topic,
                         *watermarks(T0 + (WINDOWS + 4) * W)))
        asyncio.run(publish(settings, reports=reports))
        # From another producer, a single event with one value of the wrong type: the
        # value is dropped, the event's other outcome kept.
        asyncio.run(send(settings, settings.labels_topic, odd, *watermarks(
            T0 + (WINDOWS + 4) * W)))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: wanted <= {
            a["dedup_key"] for a in got}, wait_seconds=120))
        expected = expected_sums(predictions, counted)
        deadline = time.monotonic() + 60
        while not same(got := stored_sums(settings), expected) and time.monotonic() < deadline:
            time.sleep(1)
        comparisons = http_rows(settings, (
            "SELECT model, model_version, against, against_version, outcome, verdict, "
            "relative_change, difference_low, difference_high "
            f"FROM {settings.clickhouse_database}.outcome_comparisons FINAL"))
        readme = readme_query(settings)
        letters = http_rows(settings, "SELECT count() AS n FROM "
                                      f"{settings.clickhouse_database}.dead_letters FINAL")
    finally:
        worker.stop()

    assert same(got, expected), sorted(set(got.items()) ^ set(expected.items()))[:6]
    assert int(letters[0]["n"]) == 0  # the odd value cost nothing else
    outcome_alerts = [a for a in alerts if a["dedup_key"].startswith("outcome:")]
    assert {a["dedup_key"] for a in outcome_alerts} == wanted  # nothing for twin, no baseline
    opened = {a["dedup_key"]: a for a in outcome_alerts if a["state"] == "open"}
    converted = opened["outcome:shop:v2:outcome.converted:challenger_test"]
    assert converted["model"] == "shop" and converted["version"] == "v2"
    assert "vs champion v1" in converted["summary"] and "95% interval" in converted["summary"]
    assert converted["value"] < -0.1  # relative change, about -30 %
    flagged = {(c["model"], c["outcome"]) for c in comparisons
               if c["against"] == "champion" and c["verdict"] in ("warning", "critical")}
    assert flagged == {("shop", "converted"), ("shop", "revenue")}
    twin = [c for c in comparisons if c["model"] == "twin" and c["against"] == "champion"]
    assert twin and all(c["verdict"] in ("ok", "not_evaluated") for c in twin)
    assert {c["against_version"] for c in twin} == {"v1"}
    # The README's conversion rate per version over a range, as the sums say.
    for (model, version), rate in readme.items():
        keys = [k for k in expected if k[:2] == (model, version) and k[3] == "converted"]
        n = sum(expected[k][0] for k in keys)
        assert rate == pytest.approx(sum(expected[k][4] for k in keys) / n, rel=1e-12)


def readme_query(settings: Settings) -> dict[tuple[str, str], float]:
    """The README's conversion-rate query, run on this test's database."""
    text = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    blocks = [b.split("```")[0] for b in text.split("```sql\n")[1:]]
    (sql,) = [b for b in blocks if "sum(positive) / sum(n_predicted)" in b]
    sql = (sql.replace("driftline.", f"{settings.clickhouse_database}.")
           .replace("2026-11-27 00:00:00", "2025-11-27 00:00:00")
           .replace("2026-11-28 00:00:00", "2025-11-28 00:00:00"))
    rows = http_rows(settings, sql.rstrip().rstrip(";"))
    return {(r["model"], r["model_version"]): float(r["conversion_rate"]) for r in rows}
