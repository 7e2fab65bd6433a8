"""The telemetry agent without servers: GPU readings through the replay backend (the same
sampler code as real NVML), host readings from this machine's psutil, the bounded buffer,
the telemetry codec and its JSON Schema."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftline.models.events.wire import (
    MAX_EVENT_TIME_MS,
    MAX_NAME_LENGTH,
    MIN_EVENT_TIME_MS,
    BadMessage,
)
from driftline.models.telemetry.sample import (
    GpuProcess,
    GpuSample,
    HostMetrics,
    ProcessSample,
    TelemetrySample,
    decode_telemetry,
)
from driftline.streams import cli
from driftline.streams.agent import (
    AgentConfig,
    GpuSampler,
    HostSampler,
    ReplayBackend,
    SampleBuffer,
    TelemetryAgent,
    recording_names,
)
from driftline.streams.agent.buffer import Message
from driftline.streams.agent.host import _rate, model_from_cmdline
from driftline.streams.agent.nvml import PynvmlBackend, nvml_error, pynvml
from driftline.streams.settings import Settings

SCHEMA = json.loads((Path(__file__).parents[2] / "models/schemas/telemetry.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
T0 = 1_764_230_400_000
MiB = 1024 * 1024


def replay_samples(n: int = 20) -> list[list[GpuSample]]:
    sampler = GpuSampler(ReplayBackend.shipped("h100x2"))
    assert sampler.start() == 2
    samples = [sampler.sample() for _ in range(n)]
    sampler.close()
    return samples


def gpu_entry(**readings: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "utilization_rates": [50, 20], "memory_info": [10 * MiB, 80 * MiB], "temperature": 50,
        "power_usage": 300_000, "clock_sm": 1500, "clock_mem": 2600, "clocks_event_reasons": 0,
        "ecc_corrected": 0, "ecc_uncorrected": 0, "pcie_tx": 10, "pcie_rx": 20,
        "compute_running_processes": []}
    entry.update(readings)
    return entry


def recording(*gpus: dict[str, Any], **device: Any) -> ReplayBackend:
    devices = [{"uuid": f"GPU-{i}", "name": "Test GPU", "enforced_power_limit": 400_000,
                "register_xid_events": True, **device} for i in range(len(gpus))]
    return ReplayBackend({"devices": devices, "samples": [{"gpus": list(gpus)}]}, "test")


def one_gpu(backend: ReplayBackend) -> GpuSample:
    sampler = GpuSampler(backend)
    sampler.start()
    (gpu,) = sampler.sample()
    return gpu


# --- GPU readings through the replay backend --------------------------------------------

def test_shipped_recording_is_listed_and_plays_two_gpus_in_a_loop() -> None:
    assert "h100x2" in recording_names()
    backend = ReplayBackend.shipped()
    assert len(backend) == 20
    samples = replay_samples(21)
    assert [len(gpus) for gpus in samples] == [2] * 21
    assert {gpu.name for gpus in samples for gpu in gpus} == {"NVIDIA H100 80GB HBM3"}
    # After the last recorded sample the first comes again.
    assert samples[20][0].power_draw_w == samples[0][0].power_draw_w == 72.713


def test_not_supported_readings_are_null_and_the_rest_is_read() -> None:
    for gpu0, gpu1 in replay_samples():
        # GPU 1 is in MIG mode: no device utilisation, no per-process memory.
        assert gpu1.utilization_gpu_percent is None and gpu1.utilization_memory_percent is None
        assert gpu1.processes is not None
        assert {p.used_memory_bytes for p in gpu1.processes} == {None}
        assert gpu1.memory_used_bytes and gpu1.memory_total_bytes == 85_520_809_984
        assert gpu1.error is None
        assert gpu0.utilization_gpu_percent is not None
        assert gpu0.power_limit_w == 700.0 and 0 < (gpu0.power_draw_w or 0) <= 700.0


def test_throttle_reasons_as_bitmask_and_names() -> None:
    names = [gpu0.throttle_reason_names for gpu0, _ in replay_samples()]
    masks = [gpu0.throttle_reasons for gpu0, _ in replay_samples()]
    assert names[0] == ["gpu_idle"] and masks[0] == 0x1
    assert names[8] == ["sw_power_cap"] and masks[8] == 0x4
    assert names[11] == ["sw_power_cap", "sw_thermal_slowdown"] and masks[11] == 0x24
    assert names[15] == [] and masks[15] == 0


def test_xid_event_lands_in_the_sample_after_it_and_only_on_its_gpu() -> None:
    samples = replay_samples()
    assert [i for i, (gpu0, _) in enumerate(samples) if gpu0.xid_errors] == [14]
    assert samples[14][0].xid_errors == [63]
    assert samples[14][0].ecc_volatile_corrected == 4
    assert all(gpu1.xid_errors == [] for _, gpu1 in samples)


def test_per_process_gpu_memory() -> None:
    samples = replay_samples()
    assert samples[0][0].processes == []
    processes = samples[5][0].processes
    assert processes is not None and len(processes) == 1
    process = processes[0]
    assert process.pid == 41873
    assert process.used_memory_bytes is not None and process.used_memory_bytes > 70_000 * MiB


def test_nvml_sentinels_become_null() -> None:
    gpu = one_gpu(recording(gpu_entry(
        temperature=0xFFFFFFFF, memory_info=[0xFFFFFFFFFFFFFFFF, 80 * MiB],
        compute_running_processes=[[7, 0xFFFFFFFFFFFFFFFF], [8, 5 * MiB]])))
    assert gpu.temperature_c is None
    assert gpu.memory_used_bytes is None and gpu.memory_total_bytes == 80 * MiB
    assert gpu.processes == [GpuProcess(pid=7, used_memory_bytes=None),
                             GpuProcess(pid=8, used_memory_bytes=5 * MiB)]


def test_unexpected_nvml_errors_are_null_and_reported_in_error(
        caplog: pytest.LogCaptureFixture) -> None:
    lost = {"nvml_error": "GPU_IS_LOST"}
    gpu = one_gpu(recording(gpu_entry(power_usage=lost, temperature=lost,
                                      utilization_rates={"nvml_error": "NOT_SUPPORTED"})))
    assert gpu.power_draw_w is None and gpu.temperature_c is None
    assert gpu.utilization_gpu_percent is None
    assert gpu.error == "temperature: GPU is lost"  # the first unexpected one, in read order
    assert gpu.sm_clock_mhz == 1500
    assert any(r.levelno == logging.WARNING and "GPU is lost" in r.message
               for r in caplog.records)


def test_each_unavailable_reading_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "driftline.streams.agent")
    sampler = GpuSampler(ReplayBackend.shipped())
    sampler.start()
    for _ in range(5):
        sampler.sample()
    assert sum("no utilization" in r.message for r in caplog.records) == 1


def test_xid_events_unavailable_are_null() -> None:
    gpu = one_gpu(recording(gpu_entry(), register_xid_events={"nvml_error": "NO_PERMISSION"}))
    assert gpu.xid_errors is None


def test_replay_raises_what_nvml_raises() -> None:
    backend = recording(gpu_entry(pcie_tx={"nvml_error": "NOT_SUPPORTED"}))
    backend.init()
    backend.begin_sample()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        backend.pcie_throughput(0, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    assert backend.pcie_throughput(0, pynvml.NVML_PCIE_UTIL_RX_BYTES) == 20
    assert nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED) == pynvml.NVMLError_NotSupported(
        pynvml.NVML_ERROR_NOT_SUPPORTED)


def test_replay_rejects_bad_recordings_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one entry per device"):
        ReplayBackend({"devices": [{}], "samples": [{"gpus": []}]}, "bad")
    with pytest.raises(ValueError,
                       match=r"^no GPU recording 'nope': give .* h100x2, h100x2-steady$"):
        ReplayBackend.load("nope")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="cannot read GPU recording"):
        ReplayBackend.load(str(broken))


def test_replay_loads_a_recording_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(recording(gpu_entry()).recording))
    backend = ReplayBackend.load(str(path))
    assert backend.source == "replay:mine"
    assert one_gpu(backend).temperature_c == 50


# --- host readings on this machine -------------------------------------------------------

def test_host_metrics_shape() -> None:
    sampler = HostSampler()
    host, processes = sampler.sample()
    assert processes == []
    assert len(host.cpu_percent_per_core) == psutil.cpu_count()
    assert 0 <= host.cpu_percent <= 100
    assert 0 < host.memory_available_bytes <= host.memory_total_bytes
    assert 0 <= host.memory_percent <= 100
    assert host.swap_used_bytes <= host.swap_total_bytes or host.swap_total_bytes == 0
    assert host.load_1m is None or host.load_1m >= 0


def test_io_rates_are_non_negative_deltas(tmp_path: Path) -> None:
    sampler = HostSampler()
    (tmp_path / "io").write_bytes(b"x" * MiB)
    host, _ = sampler.sample()
    rates = [host.disk_read_bytes_per_s, host.disk_write_bytes_per_s,
             host.net_sent_bytes_per_s, host.net_recv_bytes_per_s]
    assert all(rate is None or rate >= 0 for rate in rates)
    assert _rate(1_500, 1_000, 2.0) == 250.0
    assert _rate(1_000, 1_500, 2.0) is None  # a counter reset, not a negative rate
    assert _rate(1_000, None, 2.0) is None and _rate(1_000, 900, 0.0) is None


@pytest.fixture
def serving_processes() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]]:
    """Two idle Python processes: one names its model in its environment, the other on its
    command line, after a marker the pattern can select it by."""
    marker = f"serving-{uuid.uuid4().hex[:8]}"
    code = "import time; time.sleep(60)"
    by_env = subprocess.Popen([sys.executable, "-c", code],
                              env={"DRIFTLINE_MODEL": "fraud-detector"})
    by_args = subprocess.Popen([sys.executable, "-c", code, marker, "--model-name",
                                "churn-predictor"])
    yield by_env, by_args, marker
    for process in (by_env, by_args):
        process.kill()
        process.wait()


def test_serving_processes_by_pid_and_pattern_with_their_models(
        serving_processes: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]) -> None:
    by_env, by_args, marker = serving_processes
    sampler = HostSampler(pids=[by_env.pid], pattern=marker)
    _, processes = sampler.sample()
    found = {p.pid: p for p in processes}
    assert set(found) == {by_env.pid, by_args.pid}
    assert found[by_env.pid].model == "fraud-detector"
    assert found[by_args.pid].model == "churn-predictor"
    assert all((p.rss_bytes or 0) > 0 for p in processes)
    by_args.kill()
    by_args.wait()
    _, processes = sampler.sample()
    (process,) = processes
    assert process.pid == by_env.pid
    assert process.cpu_percent is not None and process.cpu_percent >= 0


def test_first_sample_of_a_process_has_no_cpu_percent(
        serving_processes: tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]) -> None:
    sampler = HostSampler()
    sampler.pids = (serving_processes[0].pid,)  # appears after the sampler started
    _, (process,) = sampler.sample()
    assert process.cpu_percent is None
    _, (process,) = sampler.sample()
    assert process.cpu_percent is not None


def test_pattern_never_selects_the_agent_itself() -> None:
    sampler = HostSampler(pattern="pytest|python")
    _, processes = sampler.sample()
    assert psutil.Process().pid not in {p.pid for p in processes}


def test_model_from_cmdline() -> None:
    pattern = Settings().agent_model_arg_pattern
    assert model_from_cmdline(["serve", "--model=fraud-detector"], pattern) == "fraud-detector"
    assert model_from_cmdline(["tgi", "--model-id", "org/llm-7b"], pattern) == "org/llm-7b"
    assert model_from_cmdline(["python", "app.py"], pattern) is None
    assert model_from_cmdline(["run", "m=churn"], r"m=\w+") == "m=churn"
    assert model_from_cmdline(["--model", "x"], None) is None


# --- the bounded buffer ------------------------------------------------------------------

def test_buffer_drops_the_oldest_and_counts() -> None:
    buffer = SampleBuffer(3)
    for i in range(5):
        buffer.push(Message(b"h", b"%d" % i))
    assert buffer.dropped == 2
    assert [m.value for m in buffer] == [b"2", b"3", b"4"]
    oldest = buffer.pop_oldest()
    assert oldest is not None
    buffer.requeue(oldest)  # there was room: it goes back in front
    assert [m.value for m in buffer] == [b"2", b"3", b"4"] and buffer.dropped == 2
    assert buffer.discard() == 3 and buffer.dropped == 5 and len(buffer) == 0
    with pytest.raises(ValueError):
        SampleBuffer(0)


async def eventually(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {seconds} s")


def agent_settings(**overrides: Any) -> Settings:
    return Settings().replace(**{"agent_host": "gpu-node-07", "agent_interval_seconds": 0.05,
                                 **overrides})


async def test_agent_without_kafka_keeps_the_newest_samples_and_counts_drops() -> None:
    # Port 1 refuses connections: Kafka is "down" for the whole run.
    agent = TelemetryAgent(agent_settings(kafka_bootstrap="127.0.0.1:1", agent_buffer=4),
                           backend=ReplayBackend.shipped())
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop, grace=0.2))
    await eventually(lambda: agent.stats.sampled >= 10)
    n, held = agent.stats.sampled, [decode_telemetry(m.key, m.value) for m in agent._buffer]
    stop.set()
    stats = await run
    # The newest four are held, each saying how many were dropped before it was made.
    assert [s.dropped for s in held] == [n - 7, n - 6, n - 5, n - 4]
    assert stats.sent == 0 and stats.dropped == stats.sampled  # the rest unsent at stop


async def test_nvml_that_hangs_does_not_stop_host_telemetry() -> None:
    release = threading.Event()

    class Hanging(ReplayBackend):
        def begin_sample(self) -> None:
            release.wait(10)
            super().begin_sample()

    base = ReplayBackend.shipped()
    agent = TelemetryAgent(agent_settings(agent_interval_seconds=0.1),
                           backend=Hanging(base.recording, "hanging"))
    await agent._start()
    try:
        first = await agent._sample()
        second = await agent._sample()
        assert first.gpus == [] and first.gpu_error == "NVML did not answer within 0.1 s"
        assert second.gpu_error is not None and "not answered" in second.gpu_error
        assert first.host_metrics.memory_total_bytes > 0
        release.set()
        await asyncio.sleep(0.1)
        third = await agent._sample()
        assert len(third.gpus) == 2 and third.gpu_error is None
    finally:
        release.set()
        await agent._close_gpus()


async def test_no_nvml_means_host_only_after_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    class NoDriver(PynvmlBackend):
        def init(self) -> None:
            raise nvml_error(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    agent = TelemetryAgent(agent_settings(), backend=NoDriver())
    sample = await agent.sample_once()
    assert sample.gpus == [] and sample.gpu_source is None
    assert sample.gpu_error == "NVML not available: NVML Shared Library Not Found"
    lines = [r for r in caplog.records if r.name == "driftline.streams.agent"]
    assert len(lines) == 1 and "host metrics only" in lines[0].message


async def test_sample_joins_gpu_memory_to_processes_and_uses_configured_models() -> None:
    agent = TelemetryAgent(agent_settings(agent_models="fraud-detector, churn-predictor"),
                           backend=ReplayBackend.shipped())
    gpus = replay_samples(3)[2]
    process = ProcessSample(pid=41873, name="tritonserver", model=None, cpu_percent=3.0,
                            rss_bytes=MiB, gpu_memory_bytes=None)
    host, _ = HostSampler().sample()
    sample = agent._assemble(gpus, None, host, [process])
    assert sample.models == ["fraud-detector", "churn-predictor"]
    (joined,) = sample.processes
    assert joined.gpu_memory_bytes == (gpus[0].processes or [])[0].used_memory_bytes
    VALIDATOR.validate(orjson.loads(sample.to_json()))


# --- settings and CLI --------------------------------------------------------------------

def test_agent_settings_from_env() -> None:
    settings = Settings.from_env({
        "DRIFTLINE_TELEMETRY_TOPIC": "tele", "DRIFTLINE_AGENT_INTERVAL_SECONDS": "2.5",
        "DRIFTLINE_AGENT_BUFFER": "10", "DRIFTLINE_AGENT_PIDS": "12, 34",
        "DRIFTLINE_AGENT_PROCESS_PATTERN": "tritonserver|vllm",
        "DRIFTLINE_AGENT_MODELS": "a,b", "DRIFTLINE_AGENT_HOST": "node-1"})
    config = AgentConfig.from_settings(settings)
    assert config == AgentConfig(host="node-1", topic="tele", interval_seconds=2.5, buffer=10,
                                 pids=(12, 34), process_pattern="tritonserver|vllm",
                                 models=("a", "b"),
                                 model_arg_pattern=Settings().agent_model_arg_pattern)
    defaults = Settings()
    assert (defaults.telemetry_topic, defaults.agent_interval_seconds,
            defaults.agent_buffer) == ("driftline.telemetry", 5.0, 720)
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(("env", "message"), [
    ({"DRIFTLINE_AGENT_PIDS": "12,abc"}, "DRIFTLINE_AGENT_PIDS='12,abc' must be comma-"),
    ({"DRIFTLINE_AGENT_PROCESS_PATTERN": "(vllm"}, "not a valid regular expression"),
    ({"DRIFTLINE_AGENT_INTERVAL_SECONDS": "0"}, "DRIFTLINE_AGENT_INTERVAL_SECONDS must be"),
    ({"DRIFTLINE_AGENT_BUFFER": "0"}, "DRIFTLINE_AGENT_BUFFER must be at least 1"),
])
def test_bad_agent_settings_say_what_to_fix_in_one_line(env: dict[str, str],
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        AgentConfig.from_settings(Settings.from_env(env))
    assert "\n" not in str(error.value)


def test_cli_once_prints_one_sample(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRIFTLINE_AGENT_HOST", "gpu-node-07")
    monkeypatch.setenv("DRIFTLINE_AGENT_INTERVAL_SECONDS", "0.1")
    assert cli.main(["agent", "--once", "--replay", "h100x2"]) == 0
    out = capsys.readouterr().out
    sample = decode_telemetry(b"gpu-node-07", out.encode())
    assert sample.gpu_source == "replay:h100x2" and len(sample.gpus) == 2
    assert out.count("\n") == 1


def test_cli_unknown_recording_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["agent", "--once", "--replay", "no-such-recording"]) == 2
    out = capsys.readouterr().out
    assert "no GPU recording 'no-such-recording'" in out


# --- the codec and its JSON Schema -------------------------------------------------------

def host_metrics(**overrides: Any) -> HostMetrics:
    values: dict[str, Any] = dict(
        cpu_percent=12.5, cpu_percent_per_core=[10.0, 15.0], load_1m=0.5, load_5m=0.4,
        load_15m=0.3, memory_total_bytes=2048, memory_used_bytes=1024,
        memory_available_bytes=1024, memory_percent=50.0, swap_total_bytes=0,
        swap_used_bytes=0, swap_percent=0.0, disk_read_bytes_per_s=None,
        disk_write_bytes_per_s=1.5, net_sent_bytes_per_s=0.0, net_recv_bytes_per_s=None)
    values.update(overrides)
    return HostMetrics(**values)


def replay_sample() -> TelemetrySample:
    return TelemetrySample(host="gpu-node-07", event_time=T0, interval_seconds=5.0,
                           models=["fraud-detector"], gpu_source="replay:h100x2",
                           gpu_error=None, gpus=replay_samples(15)[14], host_metrics=host_metrics(),
                           processes=[ProcessSample(pid=41873, name="tritonserver",
                                                    model="fraud-detector", cpu_percent=None,
                                                    rss_bytes=3 * MiB,
                                                    gpu_memory_bytes=72_000 * MiB)],
                           dropped=0)


def test_decode_round_trip_and_schema() -> None:
    sample = replay_sample()
    assert decode_telemetry(sample.key, sample.to_json()) == sample
    VALIDATOR.validate(orjson.loads(sample.to_json()))


def test_schema_is_valid_documents_every_field_and_its_examples_decode() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == "https://driftline.dev/schemas/telemetry.json"
    assert SCHEMA["title"] and SCHEMA["description"] and SCHEMA["examples"]
    for example in SCHEMA["examples"]:
        VALIDATOR.validate(example)
        decode_telemetry(example["host"].encode(), orjson.dumps(example))
    defs = SCHEMA["$defs"]
    for schema, record in ((SCHEMA, TelemetrySample), (defs["gpu"], GpuSample),
                           (defs["gpu_process"], GpuProcess),
                           (defs["host_metrics"], HostMetrics),
                           (defs["process"], ProcessSample)):
        fields = {f.name: f for f in dataclasses.fields(record)}
        assert set(schema["properties"]) == set(fields), record.__name__
        nullable = {name for name, f in fields.items() if "None" in str(f.type)}
        assert set(schema["required"]) == set(fields) - nullable, record.__name__
    assert (defs["event_time"]["minimum"], defs["event_time"]["maximum"]) == (
        MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)
    assert defs["name"]["maxLength"] == MAX_NAME_LENGTH


def bad(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(replay_sample().to_json())
    for path, value in changes.items():
        target = doc
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[int(parent)] if isinstance(target, list) else target[parent]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return doc


BAD = {
    "wrong type": (bad(type="prediction"), "expected a telemetry object"),
    "no host": (bad(host=KeyError), "lacks required field 'host'"),
    "empty host": (bad(host=""), "'host' must be 1 to 256"),
    "event_time in seconds": (bad(event_time=1_764_230_400), "'event_time' 1764230400 is out"),
    "event_time as text": (bad(event_time="now"), "'event_time' must be an integer"),
    "negative dropped": (bad(dropped=-1), "'dropped' must be an integer >= 0"),
    "bool as a count": (bad(gpus__0__temperature_c=True), "'gpus[0].temperature_c' must be"),
    "float as a count": (bad(gpus__0__memory_used_bytes=1.5), "'gpus[0].memory_used_bytes'"),
    "text as a number": (bad(host_metrics__cpu_percent="high"), "'host_metrics.cpu_percent'"),
    "gpus not a list": (bad(gpus={}), "'gpus' must be a list"),
    "model too long": (bad(models=["m" * 257]), "'models[0]' must be 1 to 256"),
    "no host metrics": (bad(host_metrics=None), "lacks required field 'host_metrics'"),
    "xid as text": (bad(gpus__0__xid_errors=["63"]), "'gpus[0].xid_errors[0]' must be"),
}


@pytest.mark.parametrize(("doc", "message"), BAD.values(), ids=BAD.keys())
def test_bad_samples_are_rejected_by_decoder_and_schema(doc: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(BadMessage, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")) as error:
        decode_telemetry(b"gpu-node-07", orjson.dumps(doc))
    assert "\n" not in str(error.value)
    assert not VALIDATOR.is_valid(doc)


def test_key_must_be_the_host_and_value_json() -> None:
    value = replay_sample().to_json()
    with pytest.raises(BadMessage, match="message key 'other' must be the host name"):
        decode_telemetry(b"other", value)
    with pytest.raises(BadMessage, match="not valid JSON"):
        decode_telemetry(b"gpu-node-07", b"{")
    with pytest.raises(BadMessage, match="has no value"):
        decode_telemetry(b"gpu-node-07", None)
    # Nullable fields may be absent; unknown fields are ignored.
    doc = bad(gpu_error=KeyError, gpus__0__processes=KeyError, extra=1)
    sample = decode_telemetry(b"gpu-node-07", orjson.dumps(doc))
    assert sample.gpu_error is None and sample.gpus[0].processes is None


# orjson, like JSON itself, cannot encode lone surrogates: text is valid Unicode.
texts = st.text(st.characters(exclude_categories=["Cs"]))
counts = st.integers(0, 2**63 - 1)
numbers = st.floats(0, 1e15, allow_nan=False, allow_infinity=False)
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=MAX_NAME_LENGTH)
gpu_processes = st.builds(GpuProcess, pid=counts, used_memory_bytes=st.none() | counts)
gpus = st.builds(
    GpuSample, index=counts, uuid=st.none() | texts, name=st.none() | texts,
    utilization_gpu_percent=st.none() | counts, utilization_memory_percent=st.none() | counts,
    memory_used_bytes=st.none() | counts, memory_total_bytes=st.none() | counts,
    temperature_c=st.none() | counts, power_draw_w=st.none() | numbers,
    power_limit_w=st.none() | numbers, sm_clock_mhz=st.none() | counts,
    memory_clock_mhz=st.none() | counts, throttle_reasons=st.none() | counts,
    throttle_reason_names=st.none() | st.lists(texts, max_size=3),
    ecc_volatile_corrected=st.none() | counts, ecc_volatile_uncorrected=st.none() | counts,
    xid_errors=st.none() | st.lists(counts, max_size=3),
    pcie_tx_kb_per_s=st.none() | counts, pcie_rx_kb_per_s=st.none() | counts,
    processes=st.none() | st.lists(gpu_processes, max_size=3), error=st.none() | texts)
hosts = st.builds(
    HostMetrics, cpu_percent=numbers, cpu_percent_per_core=st.lists(numbers, max_size=8),
    load_1m=st.none() | numbers, load_5m=st.none() | numbers, load_15m=st.none() | numbers,
    memory_total_bytes=counts, memory_used_bytes=counts, memory_available_bytes=counts,
    memory_percent=numbers, swap_total_bytes=counts, swap_used_bytes=counts,
    swap_percent=numbers, disk_read_bytes_per_s=st.none() | numbers,
    disk_write_bytes_per_s=st.none() | numbers, net_sent_bytes_per_s=st.none() | numbers,
    net_recv_bytes_per_s=st.none() | numbers)
processes = st.builds(ProcessSample, pid=counts, name=st.none() | texts,
                      model=st.none() | names, cpu_percent=st.none() | numbers,
                      rss_bytes=st.none() | counts, gpu_memory_bytes=st.none() | counts)
samples = st.builds(
    TelemetrySample, host=names, event_time=st.integers(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS),
    interval_seconds=numbers, models=st.lists(names, max_size=3),
    gpu_source=st.none() | texts, gpu_error=st.none() | texts,
    gpus=st.lists(gpus, max_size=3), host_metrics=hosts,
    processes=st.lists(processes, max_size=3), dropped=counts)


@settings(max_examples=150)
@given(samples)
def test_codec_round_trip(sample: TelemetrySample) -> None:
    value = sample.to_json()
    assert decode_telemetry(sample.key, value) == sample
    VALIDATOR.validate(orjson.loads(value))
