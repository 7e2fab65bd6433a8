"""The telemetry agent against the real embedded broker (samples arrive, keyed by host, in
order; a broker outage costs the oldest samples only, counted), and against real NVML
where this machine has it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from jsonschema import Draft202012Validator

from driftline.models.telemetry.sample import HostMetrics, TelemetrySample, decode_telemetry
from driftline.streams.agent import GpuSampler, PynvmlBackend, ReplayBackend, TelemetryAgent
from driftline.streams.agent.nvml import pynvml
from driftline.streams.embedded.broker import EmbeddedBroker
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings

pytestmark = pytest.mark.integration

HOST = "gpu-node-07"
VALIDATOR = Draft202012Validator(json.loads(
    (Path(__file__).parents[2] / "models/schemas/telemetry.json").read_text()))


async def eventually(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {seconds} s")


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` once ``expected`` arrived and a second passed quietly."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records: list[Any] = []
        async with asyncio.timeout(60):
            while len(records) < expected:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(batch)  # a duplicate would show up here
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def agent_settings(bootstrap: str, unique_name: str, **overrides: Any) -> Settings:
    return Settings().replace(**{
        "kafka_bootstrap": bootstrap, "broker_flavor": "tansu",
        "telemetry_topic": f"telemetry-{unique_name}", "agent_host": HOST,
        "agent_interval_seconds": 0.05, "partitions": 2, **overrides})


def check_samples(records: list[Any]) -> list[TelemetrySample]:
    samples = [decode_telemetry(r.key, r.value) for r in records]
    for record in records:
        VALIDATOR.validate(orjson.loads(record.value))
    assert {r.key for r in records} == {HOST.encode()}
    assert len({r.partition for r in records}) == 1  # keyed by host: one partition, in order
    times = [s.event_time for s in samples]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(len(s.gpus) == 2 and s.gpu_source == "replay:h100x2" for s in samples)
    return samples


async def test_agent_publishes_samples_keyed_by_host(embedded_stack: EmbeddedStack,
                                                     unique_name: str) -> None:
    settings = agent_settings(embedded_stack.settings_overrides()["kafka_bootstrap"],
                              unique_name)
    agent = TelemetryAgent(settings, backend=ReplayBackend.shipped())
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await eventually(lambda: agent.stats.sent >= 25)  # more than once round the recording
    stop.set()
    stats = await run
    assert stats.sent == stats.sampled and stats.dropped == stats.send_errors == 0
    records = await read_topic(settings.kafka_bootstrap, settings.telemetry_topic, stats.sent)
    assert len(records) == stats.sent
    samples = check_samples(records)
    assert all(s.dropped == 0 for s in samples)
    # The recording's XID 63 on GPU 0 (its 15th sample) arrives once per round.
    assert [i for i, s in enumerate(samples) if s.gpus[0].xid_errors] == [
        i for i in range(len(samples)) if i % 20 == 14]


async def test_agent_survives_broker_outages(tmp_path: Path, unique_name: str) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")  # not started yet: Kafka is down
    settings = agent_settings(broker.bootstrap, unique_name, agent_buffer=5)
    agent = TelemetryAgent(settings, backend=ReplayBackend.shipped())
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop, grace=20))
    try:
        await eventually(lambda: agent.stats.dropped >= 5)  # the buffer overflowed
        await asyncio.to_thread(broker.start)
        await eventually(lambda: agent.stats.sent >= 10)
        # A hung broker (a stopped process: connections stay open, nothing answers). A
        # restart would not do: the embedded broker keeps its data in memory only.
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        dropped = agent.stats.dropped
        try:
            await eventually(lambda: agent.stats.dropped >= dropped + 5)
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        sent = agent.stats.sent
        await eventually(lambda: agent.stats.sent >= sent + 10)
        stop.set()
        stats = await run
        records = await read_topic(broker.bootstrap, settings.telemetry_topic, stats.sent)
    finally:
        stop.set()
        await asyncio.gather(run, return_exceptions=True)
        await asyncio.to_thread(broker.stop)
    # Every sample was either sent or dropped, and counted once.
    assert stats.sampled == stats.sent + stats.dropped and len(records) == stats.sent
    samples = check_samples(records)
    drops = [s.dropped for s in samples]
    assert drops == sorted(drops)
    # The first outage: the oldest samples were dropped, so the first to arrive was made
    # after some drops (dropping the newest would have kept the first, with 0).
    assert drops[0] >= 1
    # The second outage is counted too, in the samples after it.
    assert drops[-1] == stats.dropped >= dropped + 5


async def test_real_nvml_readings(tmp_path: Path) -> None:
    sampler = GpuSampler(PynvmlBackend())
    try:
        count = sampler.start()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML not available: {exc}")
    try:
        if count == 0:
            pytest.skip("NVML not available: the driver sees no GPU")
        sampler.sample()
        await asyncio.sleep(0.2)
        gpus = sampler.sample()
    finally:
        sampler.close()
    assert [gpu.index for gpu in gpus] == list(range(count))
    for gpu in gpus:
        assert gpu.uuid is not None and gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.name and gpu.memory_total_bytes and gpu.memory_total_bytes > 0
        assert gpu.memory_used_bytes is None or gpu.memory_used_bytes <= gpu.memory_total_bytes
        assert gpu.temperature_c is None or 0 < gpu.temperature_c < 130
        assert gpu.power_limit_w is None or gpu.power_limit_w > 0
        assert (gpu.throttle_reasons is None) == (gpu.throttle_reason_names is None)
        assert gpu.error is None, gpu.error
    # The same readings through the agent, as they would be published.
    agent = TelemetryAgent(Settings().replace(agent_host=HOST, agent_interval_seconds=0.2))
    sample = await agent.sample_once()
    assert sample.gpu_source == "nvml" and len(sample.gpus) == count
    assert isinstance(sample.host_metrics, HostMetrics)
    assert decode_telemetry(sample.key, sample.to_json()) == sample
    VALIDATOR.validate(orjson.loads(sample.to_json()))
