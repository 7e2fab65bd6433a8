"""What a stranger reads driftline with: ClickHouse over plain HTTP, and the alerts topic
through a plain Kafka consumer; and what a stranger's webhook endpoint is: a plain HTTP
server."""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class PostServer:
    """A local HTTP server, in a thread of its own, that answers each POST with the status
    ``answer(path, headers, body)`` returns, one request at a time; a context manager."""

    def __init__(self, answer: Callable[[str, dict[str, str], bytes], int]) -> None:
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib calls it by this name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    status = answer(self.path, dict(self.headers), body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PostServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
