"""Service chains end to end: spans recorded by the real OpenTelemetry SDK and encoded by its
OTLP exporter code go to the embedded broker as the Collector's Kafka exporter writes them
(``otlp_proto``, and ``otlp_json``); the worker counts every call exactly once, opens an
incident naming the hop that slowed and resolves it, and the model's own latency alert says
which hop downstream explains it."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from stranger import http_rows, read_alerts

from driftline.streams.demo.traces import DATABASE, FEATURE_STORE, ChainTracer
from driftline.streams.model_overrides import ModelOverrides
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

MODEL, SERVICE = "churn", "churn-serving"
W = 10_000
WINDOWS, SLOW = 14, {7, 8, 9}
HOP = f"chain:{MODEL}::{FEATURE_STORE}:hop_latency_p95_ratio"
LATENCY = f"service:{MODEL}:v1:latency"


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(reference_wait_seconds=2.0, window_seconds=W // 1000,
                           models={MODEL: ModelOverrides(service=SERVICE)})


def start_ms() -> int:
    now = time.time_ns() // 1_000_000
    return now - now % W - (WINDOWS + 2) * W


def otlp_json(message: bytes) -> bytes:
    """The message as the Collector's ``otlp_json`` encoding writes it (ids as hex)."""
    doc: dict[str, Any] = MessageToDict(ExportTraceServiceRequest.FromString(message),
                                        use_integers_for_enums=True)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(doc)


async def send_traces(settings: Settings, tracer: ChainTracer, t0: int,
                      encode: Callable[[bytes], bytes] = bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for w in range(WINDOWS):
            for tick in range(6):  # the Collector's batches, a few per window
                start = t0 + w * W + tick * (W // 6)
                message = tracer.record(start, start + W // 6, 20, slow=w in SLOW)
                await producer.send_and_wait(settings.traces_topic, encode(message))
    finally:
        await producer.stop()


async def send_predictions(settings: Settings, t0: int) -> None:
    """The model's own view: 600 predictions a window, three times slower while slow."""
    rng = np.random.default_rng(9)
    async with AsyncPublisher.from_settings(settings) as publisher:
        for w in range(WINDOWS):
            times = np.sort(rng.integers(t0 + w * W, t0 + (w + 1) * W, 600))
            latency = rng.gamma(4.0, 5.0, times.size) * (3.0 if w in SLOW else 1.0)
            for i, at in enumerate(times.tolist()):
                publisher.log_prediction(MODEL, "v1", f"r{w}-{i}", {"x": float(i % 7)},
                                         prediction=1, latency_ms=float(latency[i]),
                                         status="ok", event_time_ms=at)
            await publisher.flush()


def wait_for(settings: Settings, sql: str, worker: WorkerProcess, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if http_rows(settings, sql):
                return
        except OSError:
            pass  # the table is not there yet
        assert time.monotonic() < deadline and worker.is_running(), worker.log_tail()
        time.sleep(0.5)


def test_a_slow_hop_is_named_and_explains_the_models_latency_alert(
        settings: Settings, tmp_path: Path) -> None:
    t0, db = start_ms(), settings.clickhouse_database
    tracer = ChainTracer(SERVICE)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(send_traces(settings, tracer, t0))
        # Every window of every hop written (the last ones when the worker's own watermark
        # passes them), before the model's predictions come.
        wait_for(settings, f"SELECT 1 FROM {db}.service_calls FINAL GROUP BY 1 "
                           f"HAVING count() = {2 * WINDOWS}", worker)
        asyncio.run(send_predictions(settings, t0))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: {
            (HOP, "open"), (HOP, "resolved"), (LATENCY, "open")} <= {
            (a["dedup_key"], a["state"]) for a in got}, wait_seconds=150))
        calls = http_rows(settings, (
            "SELECT caller, callee, sum(calls) AS calls, sum(errors) AS errors, "
            "countIf(latency_p95_ratio >= 2) AS slow FROM "
            f"{db}.service_calls FINAL GROUP BY caller, callee ORDER BY callee"))
        operations = http_rows(settings, (
            "SELECT service, operation, sum(calls) AS calls, sum(errors) AS errors FROM "
            f"{db}.service_operations FINAL GROUP BY service, operation ORDER BY service"))
    finally:
        worker.stop()
    assert tracer.calls == WINDOWS * 6 * 20 and tracer.timeouts > 0
    assert calls == [
        {"caller": SERVICE, "callee": FEATURE_STORE, "calls": tracer.calls,
         "errors": tracer.timeouts, "slow": len(SLOW)},
        {"caller": SERVICE, "callee": DATABASE, "calls": tracer.calls, "errors": 0, "slow": 0}]
    assert operations == [
        {"service": SERVICE, "operation": "predict", "calls": tracer.calls, "errors": 0},
        {"service": FEATURE_STORE, "operation": "get_features", "calls": tracer.calls,
         "errors": tracer.timeouts}]
    hop = [a for a in alerts if a["dedup_key"] == HOP]
    assert [a["state"] for a in hop] == ["open", "resolved"]
    assert hop[0]["model"] == MODEL and hop[0]["feature"] == FEATURE_STORE
    assert hop[0]["summary"].startswith(f"service chain {MODEL} → {FEATURE_STORE}: degraded")
    latency = next(a for a in alerts if a["dedup_key"] == LATENCY and a["state"] == "open")
    assert f"slowest hop downstream: {SERVICE} → {FEATURE_STORE}, p95 " in latency["summary"]
    assert DATABASE not in latency["summary"]


def test_otlp_json_spans_are_counted_exactly(worker_settings: Callable[..., Settings],
                                             tmp_path: Path) -> None:
    settings = worker_settings(window_seconds=W // 1000, traces_encoding="otlp_json")
    t0, db = start_ms(), settings.clickhouse_database
    tracer = ChainTracer(SERVICE, seed=4)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(send_traces(settings, tracer, t0, otlp_json))
        wait_for(settings, f"SELECT 1 FROM {db}.service_calls FINAL GROUP BY 1 "
                           f"HAVING count() = {2 * WINDOWS}", worker)
        calls = http_rows(settings, f"SELECT callee, sum(calls) AS calls FROM "
                                    f"{db}.service_calls FINAL GROUP BY callee ORDER BY callee")
    finally:
        worker.stop()
    assert calls == [{"callee": FEATURE_STORE, "calls": tracer.calls},
                     {"callee": DATABASE, "calls": tracer.calls}]
