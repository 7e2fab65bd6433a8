"""What a stranger reads driftline with: ClickHouse over plain HTTP, and the alerts topic
through a plain Kafka consumer."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess


def http_rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    """``sql``'s rows from ClickHouse's HTTP interface, one dict per row."""
    url = settings.clickhouse_url.rstrip("/") + "/?" + urllib.parse.urlencode(
        {"query": sql + " FORMAT JSONEachRow"})
    with urllib.request.urlopen(url, timeout=30) as response:
        return [orjson.loads(line) for line in response.read().splitlines()]


async def read_alerts(settings: Settings, worker: WorkerProcess,
                      done: Callable[[list[dict[str, Any]]], bool],
                      wait_seconds: float = 150.0) -> list[dict[str, Any]]:
    """Alerts from the start of the topic until ``done`` says so, then whatever else was on
    its way (3 s more); fails if the worker exits or ``wait_seconds`` pass first."""
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    alerts: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_seconds
    try:
        while not done(alerts):
            assert time.monotonic() < deadline and worker.is_running(), worker.log_tail()
            for records in (await consumer.getmany(timeout_ms=500)).values():
                alerts += [orjson.loads(r.value) for r in records]
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            alerts += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return alerts
