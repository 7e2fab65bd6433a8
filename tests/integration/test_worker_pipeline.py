"""End to end on the real embedded broker and ClickHouse: publisher -> Kafka -> worker
(a real ``driftline worker`` process) -> ClickHouse, with exact totals."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from clickhouse_connect.driver.client import Client

from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import RECORD_LIMIT
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000  # a window boundary
EDGES = (-1.0, 0.0, 1.0)


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(bin_edges={"x": EDGES})



@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path / "worker.log").start()
    yield process
    process.stop()


def traffic(seed: int, windows: int = 3, per_window: int = 400) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    events = []
    for model in ("alpha", "beta"):
        for w in range(windows):
            times = np.sort(T0 + w * W + rng.integers(0, W, per_window))
            x = rng.normal(0, 1, per_window)
            for i in range(per_window):
                events.append({
                    "model": model, "version": "v1", "request_id": f"{model}-{w}-{i}",
                    "event_time": int(times[i]),
                    "features": {"x": None if i % 50 == 0 else float(x[i]),
                                 "c": ["red", "green", "blue"][int(x[i] > 0) + (i % 7 == 0)]}})
    return events


def expected_rows(events: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    cells: dict[tuple[str, str, int], list[Any]] = {}
    for e in events:
        start = e["event_time"] - e["event_time"] % W
        for name, value in e["features"].items():
            cells.setdefault((e["model"], name, start), []).append(value)
    out = {}
    for key, values in cells.items():
        present = [v for v in values if v is not None]
        row: dict[str, Any] = {"count": len(values), "missing_count": len(values) - len(present)}
        if key[1] == "x":
            x = np.array(present)
            row.update(mean=x.mean(), variance=x.var(), bin_counts=np.bincount(
                np.searchsorted(EDGES, x, side="right"), minlength=len(EDGES) + 1).tolist())
        else:
            cats, counts = np.unique(present, return_counts=True)
            row["categories"] = dict(zip(cats.tolist(), counts.tolist(), strict=True))
        out[key] = row
    return out


async def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    """Publish in event-time order, flushing as a live service's linger would: an envelope
    never spans more event time than the worker's allowed lateness."""
    async with AsyncPublisher.from_settings(settings) as publisher:
        for i, e in enumerate(sorted(events, key=lambda e: e["event_time"])):
            assert publisher.log_prediction(e["model"], e["version"], e["request_id"],
                                            e["features"], event_time_ms=e["event_time"])
            if i % 100 == 99:
                await publisher.flush()
        await publisher.flush()


async def produce_raw(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(settings.predictions_topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def window_rows(client: Client, settings: Settings) -> dict[tuple[str, str, int], dict[str, Any]]:
    result = client.query(
        f"SELECT model, feature, toUnixTimestamp64Milli(window_start), count, missing_count, "
        f"mean, variance, bin_counts, categories, category_counts "
        f"FROM {settings.clickhouse_database}.feature_windows FINAL "
        # The service's status (single events default to "ok") is asserted with the
        # service windows (tests/unit/test_service_monitor.py, test_demo_traffic.py).
        "WHERE feature != 'service.status'")
    rows = {}
    for model, feature, start, count, missing, mean, var, bins, cats, cat_counts in (
            result.result_rows):
        rows[(model, feature, start)] = {
            "count": count, "missing_count": missing, "mean": mean, "variance": var,
            "bin_counts": list(bins), "categories": dict(zip(cats, cat_counts, strict=True))}
    return rows


def wait_for_rows(client: Client, settings: Settings, n: int, worker: WorkerProcess,
                  timeout: float = 90.0) -> dict[tuple[str, str, int], dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            rows = window_rows(client, settings)
        except Exception as exc:
            if "UNKNOWN_DATABASE" not in str(exc) and "UNKNOWN_TABLE" not in str(exc):
                raise
        if len(rows) >= n:
            return rows
        assert worker.is_running(), worker.log_tail()
        time.sleep(0.5)
    raise AssertionError(f"{len(rows)} of {n} rows after {timeout}s; worker log:\n"
                         f"{worker.log_tail()}")


def assert_rows_match(rows: dict[tuple[str, str, int], dict[str, Any]],
                      expected: dict[tuple[str, str, int], dict[str, Any]]) -> None:
    assert set(rows) == set(expected)
    for key, want in expected.items():
        got = rows[key]
        assert (got["count"], got["missing_count"]) == (want["count"], want["missing_count"]), key
        if "mean" in want:
            assert got["mean"] == pytest.approx(want["mean"], rel=1e-9, abs=1e-12)
            assert got["variance"] == pytest.approx(want["variance"], rel=1e-9)
            assert got["bin_counts"] == want["bin_counts"]
        else:
            assert got["categories"] == want["categories"]


def test_publisher_envelopes_give_exact_windows(settings: Settings, clickhouse: Client,
                                               worker: WorkerProcess) -> None:
    events = traffic(seed=1)
    asyncio.run(publish(settings, events))
    expected = expected_rows(events)
    assert_rows_match(wait_for_rows(clickhouse, settings, len(expected), worker), expected)


def test_single_event_messages_give_exact_windows(settings: Settings, clickhouse: Client,
                                                 worker: WorkerProcess) -> None:
    events = traffic(seed=2, windows=2, per_window=150)
    messages = [(e["model"].encode(), orjson.dumps({"type": "prediction", **e}))
                for e in sorted(events, key=lambda e: e["event_time"])]
    asyncio.run(produce_raw(settings, messages))
    expected = expected_rows(events)
    assert_rows_match(wait_for_rows(clickhouse, settings, len(expected), worker), expected)


async def dead_letters(settings: Settings, n: int) -> list[tuple[bytes | None, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(settings.dead_letter_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes | None, dict[str, bytes]]] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found += [(r.value, dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


def test_bad_messages_go_to_the_dead_letter_topic_and_the_rest_arrives(
        settings: Settings, clickhouse: Client, worker: WorkerProcess) -> None:
    events = sorted(traffic(seed=3, windows=2, per_window=100), key=lambda e: e["event_time"])
    good = [(e["model"].encode(), orjson.dumps({"type": "prediction", **e})) for e in events]
    bad = [(b"alpha", b"{not json"),
           (b"alpha", orjson.dumps({"type": "prediction", "model": "alpha"})),
           (b"beta", orjson.dumps({"type": "surprise"}))]
    mixed = good[:50] + bad[:1] + good[50:120] + bad[1:] + good[120:]
    asyncio.run(produce_raw(settings, mixed))
    expected = expected_rows(events)
    assert_rows_match(wait_for_rows(clickhouse, settings, len(expected), worker), expected)
    letters = asyncio.run(dead_letters(settings, 3))
    assert sorted(v or b"" for v, _ in letters) == sorted(v for _, v in bad)
    reasons = {h["driftline.reason"].decode() for _, h in letters}
    assert any("not valid JSON" in r for r in reasons)
    assert any("unknown type 'surprise'" in r for r in reasons)
    stored = clickhouse.query(f"SELECT count() FROM {settings.clickhouse_database}.dead_letters "
                              "FINAL").result_rows[0][0]
    assert stored == 3


def test_worker_crash_mid_stream_loses_and_double_counts_nothing(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    events = traffic(seed=4, windows=4, per_window=300)
    events.sort(key=lambda e: e["event_time"])
    half = len(events) // 2
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        asyncio.run(publish(settings, events[:half]))
        # Let it process and checkpoint some of it, then kill it without warning.
        wait_for_rows(clickhouse, settings, 2, first)
    finally:
        first.kill()
    asyncio.run(publish(settings, events[half:]))
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        expected = expected_rows(events)
        rows = wait_for_rows(clickhouse, settings, len(expected), second, timeout=120)
        time.sleep(2 * settings.checkpoint_seconds)  # a late rewrite would show up now
        assert_rows_match(window_rows(clickhouse, settings), expected)
        assert rows.keys() == expected.keys()
    finally:
        second.stop()
    # The checkpoints: one record per model and one per partition, in a changelog topic
    # created compacted and sized for them whatever the broker's defaults.
    topic = f"{settings.app_id}-window_states-changelog"
    configs = asyncio.run(topic_configs(settings, topic))
    assert configs["cleanup.policy"] == "compact"
    assert int(configs["max.message.bytes"]) > RECORD_LIMIT
    keys = {key for key, _ in asyncio.run(changelog(settings, topic))}
    models = {e["model"] for e in events}
    assert {k.split(b"/")[1].decode() for k in keys if b"/" in k} == models
    assert any(re.fullmatch(rb"partition-\d+", k) for k in keys)


async def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        response = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {name: value for name, value, *_ in response[0].resources[0][4]}
    finally:
        await admin.close()


async def changelog(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records: list[tuple[bytes, bytes]] = []
        while batches := await consumer.getmany(timeout_ms=2000):
            records += [(r.key, r.value) for part in batches.values() for r in part]
        return records
    finally:
        await consumer.stop()
