"""The publisher against the real embedded broker: every event arrives once, in order,
on its model's one partition."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import socket
import threading
import time
import warnings
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from driftline.streams.publisher import AsyncPublisher, Publisher
from driftline.streams.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 4
T0 = 1_764_230_400_000
# Keys hash (murmur2, like the Java client) to partitions 2 and 1 of 4.
MODELS = ("fraud", "churn")


@dataclasses.dataclass(frozen=True)
class Topics:
    bootstrap: str
    predictions: str
    labels: str


@pytest.fixture
async def topics(embedded_stack: Any, unique_name: str) -> Topics:
    bootstrap = embedded_stack.settings_overrides()["kafka_bootstrap"]
    made = Topics(bootstrap, f"predictions-{unique_name}", f"labels-{unique_name}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(made.predictions, PARTITIONS, 1),
                                   NewTopic(made.labels, PARTITIONS, 1)])
    finally:
        await admin.close()
    return made


def features(model: str, i: int) -> dict[str, Any]:
    row: dict[str, Any] = {f"x{j}": i + j / 10 for j in range(20)}
    row.update({f"c{j}": f"{model}-{(i + j) % 7}" for j in range(5)})
    if i % 5 == 0:
        row["sometimes"] = float("nan") if i % 10 == 0 else True
    return row


def log_traffic(publisher: AsyncPublisher | Publisher, model: str, n: int) -> None:
    for i in range(n):
        assert publisher.log_prediction(model, "v1", f"{model}-{i}", features(model, i),
                                        prediction=i % 2, score=i / n, latency_ms=1.5,
                                        event_time_ms=T0 + i)
        if i % 3 == 0:
            assert publisher.log_label(model, f"{model}-{i}", i % 2, event_time_ms=T0 + i)


async def consume(topics: Topics, expected: int) -> list[Any]:
    """Every record of both topics, once ``expected`` events arrived and nothing more came."""
    consumer = AIOKafkaConsumer(topics.predictions, topics.labels,
                                bootstrap_servers=topics.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records: list[Any] = []
        async with asyncio.timeout(60):
            while sum(len(orjson.loads(r.value)["request_id"]) for r in records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(batch)  # a duplicate would show up here
    finally:
        await consumer.stop()
    return records


def check_arrivals(records: list[Any], topics: Topics, n: int) -> None:
    partitioner = DefaultPartitioner()
    request_ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    partitions: dict[tuple[str, str], set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        doc = orjson.loads(record.value)
        assert record.key == doc["model"].encode()
        kind = "prediction_batch" if record.topic == topics.predictions else "label_batch"
        assert doc["type"] == kind
        request_ids[record.topic, doc["model"]].extend(doc["request_id"])
        partitions[record.topic, doc["model"]].add(record.partition)
        if kind == "prediction_batch":
            check_prediction_columns(doc)
    for model in MODELS:
        assert request_ids[topics.predictions, model] == [f"{model}-{i}" for i in range(n)]
        assert request_ids[topics.labels, model] == [f"{model}-{i}" for i in range(0, n, 3)]
        home = partitioner(model.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))
        assert partitions[topics.predictions, model] == {home}
        assert partitions[topics.labels, model] == {home}
    assert partitions[topics.predictions, MODELS[0]] != partitions[topics.predictions, MODELS[1]]


def check_prediction_columns(doc: dict[str, Any]) -> None:
    model = doc["model"]
    for position, request_id in enumerate(doc["request_id"]):
        i = int(request_id.rsplit("-", 1)[1])
        row = {name: column[position] for name, column in doc["features"].items()}
        expected = features(model, i)
        sometimes = expected.pop("sometimes", None)
        assert row.pop("sometimes", None) == (1 if sometimes is True else None)
        assert row == expected
        assert doc["event_time"][position] == T0 + i
        assert doc["prediction"][position] == i % 2


async def test_async_publisher_delivers_every_event_once_in_order(topics: Topics) -> None:
    n = 1500
    async with AsyncPublisher(topics.bootstrap, predictions_topic=topics.predictions,
                              labels_topic=topics.labels, max_batch_events=300,
                              max_envelope_bytes=50_000) as publisher:
        for model in MODELS:
            log_traffic(publisher, model, n)
            await asyncio.sleep(0)  # let the background task send some on the way
        assert await publisher.flush()
    stats = publisher.stats
    events = 2 * (n + len(range(0, n, 3)))
    assert (stats.accepted, stats.sent_events) == (events, events)
    assert stats.sent_envelopes > 2 * (n // 300)  # 50 kB envelopes forced splits
    assert stats.nonfinite_values_nulled == 2 * len(range(0, n, 10))
    assert stats.dropped_buffer_full == stats.dropped_invalid == stats.dropped_send_failed == 0
    check_arrivals(await consume(topics, events), topics, n)


async def test_sync_publisher_from_many_threads(topics: Topics) -> None:
    n = 1200

    def serve() -> Publisher:
        publisher = Publisher(topics.bootstrap, predictions_topic=topics.predictions,
                              labels_topic=topics.labels, linger_ms=20)
        # One thread per model keeps each model's order well defined.
        threads = [threading.Thread(target=log_traffic, args=(publisher, model, n))
                   for model in MODELS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert publisher.flush(timeout=30)
        assert publisher.close(timeout=10)
        assert publisher.log_label(MODELS[0], "after-close", 1) is False
        return publisher

    publisher = await asyncio.to_thread(serve)
    events = 2 * (n + len(range(0, n, 3)))
    assert (publisher.stats.accepted, publisher.stats.sent_events) == (events, events)
    check_arrivals(await consume(topics, events), topics, n)


async def test_from_settings_uses_the_topics_and_broker_of_the_settings(
        embedded_stack: Any, topics: Topics) -> None:
    overrides = embedded_stack.settings_overrides()
    settings = Settings().replace(
        kafka_bootstrap=overrides["kafka_bootstrap"], broker_flavor=overrides["broker_flavor"],
        predictions_topic=topics.predictions, labels_topic=topics.labels)
    async with AsyncPublisher.from_settings(settings, linger_ms=10) as publisher:
        for i in range(3):
            assert publisher.log_label(MODELS[0], f"{MODELS[0]}-{i}", 1)
        assert await publisher.flush()
    records = await consume(topics, 3)
    assert [orjson.loads(r.value)["request_id"] for r in records] == [
        [f"{MODELS[0]}-{i}" for i in range(3)]]


def log_in_child(publisher: Publisher) -> None:
    for i in range(10):
        assert publisher.log_label(MODELS[0], f"child-{i}", 1)
    assert publisher.close(timeout=20)
    assert publisher.stats.sent_events == 10


async def test_a_publisher_inherited_through_fork_restarts_in_the_child(topics: Topics) -> None:
    def parent_and_child() -> int | None:
        # A long linger keeps the parent's events buffered across the fork: the child must
        # not send them a second time.
        publisher = Publisher(topics.bootstrap, predictions_topic=topics.predictions,
                              labels_topic=topics.labels, linger_ms=60_000)
        for i in range(10):
            assert publisher.log_label(MODELS[0], f"parent-{i}", 1)
        child = multiprocessing.get_context("fork").Process(target=log_in_child,
                                                             args=(publisher,))
        with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            child.start()
        child.join(60)
        assert publisher.close(timeout=20)
        assert publisher.stats.sent_events == 10
        return child.exitcode

    # Forked from the main thread, as gunicorn does (CPython 3.11's threading._shutdown
    # fails in a child forked from another thread); blocks this loop for about a second.
    assert parent_and_child() == 0
    records = await consume(topics, 20)
    request_ids = [r for record in records for r in orjson.loads(record.value)["request_id"]]
    assert sorted(request_ids) == sorted([f"parent-{i}" for i in range(10)]
                                         + [f"child-{i}" for i in range(10)])


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_an_unreachable_broker_never_blocks_logging_and_close_is_bounded() -> None:
    bootstrap = f"127.0.0.1:{unused_port()}"
    publisher = AsyncPublisher(bootstrap, max_buffered_events=100)
    await publisher.start()
    accepted = [publisher.log_label("m", f"r-{i}", 1) for i in range(150)]
    assert accepted == [True] * 100 + [False] * 50
    began = time.monotonic()
    assert await publisher.close(grace=1.0) is False
    assert time.monotonic() - began < 5
    stats = publisher.stats
    assert (stats.dropped_buffer_full, stats.dropped_send_failed, stats.sent_events) == (
        50, 100, 0)

    def sync_side() -> tuple[bool, bool, bool, float]:
        sync_publisher = Publisher(bootstrap)
        started = time.monotonic()
        logged = sync_publisher.log_label("m", "r", 1)
        flushed = sync_publisher.flush(timeout=0.5)
        closed = sync_publisher.close(timeout=0.5)
        return logged, flushed, closed, time.monotonic() - started

    logged, flushed, closed, waited = await asyncio.to_thread(sync_side)
    assert logged and not flushed and not closed and waited < 5
