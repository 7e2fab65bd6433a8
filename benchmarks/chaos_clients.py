"""The chaos suite's clients of the broker and ClickHouse: the thread that produces the
traffic, a plain HTTP reader of the tables, and the worker group's lag, committed offsets
and alert messages."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from chaos_traffic import Message

from driftline.streams.settings import Settings

# --------------------------------------------------------------------------- clients


class TrafficThread(threading.Thread):
    """Sends the messages at their due times from its own event loop, as a foreign
    producer would; ``error`` says why it stopped early."""

    def __init__(self, settings: Settings, messages: list[Message],
                 wall_start: float | None = None) -> None:
        super().__init__(name="chaos-traffic", daemon=True)
        self.settings = settings
        self.messages = messages
        #: Live traffic: due times count from this wall-clock time (the traffic's t0).
        self.wall_start = wall_start
        self.error: str | None = None
        self.started_at = time.monotonic()

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except Exception as exc:  # noqa: BLE001 - reported in the row, not raised in a thread
            self.error = f"{type(exc).__name__}: {exc}"

    async def _produce(self) -> None:
        topics = {"predictions": self.settings.predictions_topic,
                  "labels": self.settings.labels_topic,
                  "telemetry": self.settings.telemetry_topic,
                  "traces": self.settings.traces_topic}
        largest = max(len(m.value) for m in self.messages)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, linger_ms=5,
            max_request_size=largest + 1024 * 1024, request_timeout_ms=180_000)
        await producer.start()
        try:
            self.started_at = time.monotonic()
            if self.wall_start is not None:
                self.started_at += self.wall_start - time.time()
            sent = []
            for m in self.messages:
                wait = m.due - (time.monotonic() - self.started_at)
                if wait > 0:
                    await asyncio.sleep(wait)
                partition = (None if m.partition is None
                             else m.partition % self.settings.partitions)
                sent.append(await producer.send(topics[m.role], m.value, key=m.key,
                                                partition=partition))
            await producer.flush()
            for future in sent:
                await future
        finally:
            await producer.stop()


class ClickHouseReader:
    """Plain HTTP, like any client of the tables would."""

    def __init__(self, url: str, database: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 8123
        self.database = database

    def rows(self, sql: str) -> list[list[Any]]:
        """Result rows; [] while the database or table does not exist yet."""
        params = urlencode({"database": self.database, "default_format": "JSONCompact",
                            "output_format_json_quote_64bit_integers": 0})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            connection.request("POST", f"/?{params}", body=sql.encode())
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            if b"UNKNOWN_DATABASE" in body or b"UNKNOWN_TABLE" in body:
                return []
            raise RuntimeError(f"ClickHouse answered {response.status}: {body[:300]!r}")
        data: list[list[Any]] = orjson.loads(body)["data"]
        return data


async def _consumer_lag(settings: Settings) -> dict[str, int]:
    """Messages of each topic the worker group reads (the sources, and the service chains
    it forwards the traces to) it has not committed yet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)
               for topic in (settings.predictions_topic, settings.labels_topic,
                             settings.telemetry_topic, settings.traces_topic,
                             settings.service_chains_topic)]
        ends = await consumer.end_offsets(tps)  # high watermarks (tansu fix installed)
        lag: Counter[str] = Counter()
        for tp in tps:
            lag[tp.topic] += max(0, ends[tp] - (await consumer.committed(tp) or 0))
        return dict(lag)
    finally:
        await consumer.stop()


def consumer_lag(settings: Settings) -> dict[str, int] | None:
    async def bounded() -> dict[str, int]:
        async with asyncio.timeout(20):
            return await _consumer_lag(settings)
    try:
        return asyncio.run(bounded())
    except Exception:  # noqa: BLE001 - broker away or group unknown: not caught up
        return None


async def _alert_messages(settings: Settings) -> list[tuple[str, str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.alerts_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found: list[tuple[str, str]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        doc = orjson.loads(record.value)
                        found.append((doc["id"], doc["state"]))
        return found
    finally:
        await consumer.stop()


async def _committed_sum(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(settings.predictions_topic, p))
                    or 0 for p in range(settings.partitions)])
    finally:
        await consumer.stop()


def _committed_any(settings: Settings) -> bool:
    async def bounded() -> int:
        async with asyncio.timeout(10):
            return await _committed_sum(settings)
    try:
        return asyncio.run(bounded()) > 0
    except Exception:  # noqa: BLE001 - no group yet
        return False
