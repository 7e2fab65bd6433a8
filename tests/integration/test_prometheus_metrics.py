"""``/metrics`` scraped as Prometheus would, over plain HTTP, while a worker and an agent
run on the embedded stack: the counters match what the test sent."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from driftline.streams.agent import ReplayBackend, TelemetryAgent
from driftline.streams.agent.metrics import serve_agent_metrics
from driftline.streams.embedded._process import free_port
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

MODEL = "metrics-model"
T0 = 1_764_230_400_000


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def send(settings: Settings, events: int, bad: int) -> None:
    """``events`` single predictions as the README's JSON from a foreign client, and
    ``bad`` messages that are not JSON."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(events):
            doc = {"type": "prediction", "model": MODEL, "version": "v1",
                   "request_id": f"r{i}", "event_time": T0 + i * 100,
                   "features": {"x": float(i % 10)}, "latency_ms": 5.0}
            await producer.send(settings.predictions_topic, orjson.dumps(doc),
                                key=MODEL.encode())
        for _ in range(bad):
            await producer.send(settings.predictions_topic, b"{not json", key=MODEL.encode())
        await producer.flush()
    finally:
        await producer.stop()


def test_worker_metrics_count_what_was_sent(worker_settings: Callable[..., Settings],
                                           tmp_path: Path) -> None:
    port = free_port()
    settings = worker_settings(metrics_port=port, reference_wait_seconds=2.0)
    url = f"http://127.0.0.1:{port}/metrics"
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(send(settings, events=1_500, bad=3))
        deadline = time.monotonic() + 90
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            assert worker.is_running(), worker.log_tail()
            try:
                got = scrape(url)
            except OSError:
                time.sleep(0.5)
                continue
            if (value(got, "driftline_events_total", kind="prediction") >= 1_500
                    and value(got, "driftline_windows_written_total", table="feature_windows")):
                break
            time.sleep(0.5)
    finally:
        worker.stop()
    assert value(got, "driftline_events_total", kind="prediction") == 1_500
    assert value(got, "driftline_dead_letters_total", topic=settings.predictions_topic,
                 reason="not_json") == 3
    # 150 s of event time: windows 0, 1 and 2 of one feature (x) plus the model's outputs
    # and service measures are written once closed.
    assert value(got, "driftline_windows_written_total", table="feature_windows") > 0
    assert value(got, "driftline_checkpoint_seconds_count", processor="feature_windows") > 0
    assert value(got, "driftline_clickhouse_write_seconds_count") > 0
    lags = [v for (name, _), v in got.items() if name == "driftline_consumer_lag_messages"]
    assert lags and all(v >= 0 for v in lags)


def test_agent_metrics_count_samples(worker_settings: Callable[..., Settings]) -> None:
    port = free_port()
    settings = worker_settings(agent_host="gpu-node-09", agent_interval_seconds=0.05)
    agent = TelemetryAgent(settings, backend=ReplayBackend.load("h100x2"))
    serve_agent_metrics(agent, "127.0.0.1", port)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        for _ in range(400):
            if agent.stats.sent >= 10:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(run())
    got = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(got, "driftline_agent_sent_samples_total", host="gpu-node-09") \
        == agent.stats.sent >= 10
    assert value(got, "driftline_agent_samples_total", host="gpu-node-09") == agent.stats.sampled
    assert value(got, "driftline_agent_dropped_samples_total", host="gpu-node-09") == 0
