"""GPU and host telemetry windows: exact aggregates, lateness, batching and checkpoints,
infrastructure rules and incidents, the ClickHouse columns, and the processor."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from worker_fakes import FakeEvent, FakeMessage, FakeTable, FakeTopic

from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import BadMessage
from driftline.models.telemetry.aggregates import GPU_METRICS, HOST_METRICS, GpuWindowRow
from driftline.models.telemetry.infrastructure_monitor import scores
from driftline.models.telemetry.partition import TelemetryPartition, TelemetryResult
from driftline.models.telemetry.sample import (
    GpuProcess,
    GpuSample,
    HostMetrics,
    ProcessSample,
    TelemetrySample,
)
from driftline.models.telemetry.series import MAX_KEPT, MetricSeries
from driftline.models.telemetry.windows import (
    HostWatermark,
    TelemetryConfig,
    TelemetryMessage,
    TelemetryWindows,
    decode_telemetry_message,
)
from driftline.sinks.telemetry_schema import GPU_COLUMNS, GPU_WINDOWS, HOST_COLUMNS, HOST_WINDOWS
from driftline.sinks.telemetry_store import gpu_columns, host_columns
from driftline.streams.agent import GpuSampler, ReplayBackend
from driftline.streams.settings import Settings
from driftline.streams.worker.assembly import create_worker
from driftline.streams.worker.telemetry_windows import TelemetryWindowProcessor

T0 = 1_764_230_400_000  # 2025-11-27 08:00 UTC, a window start
W = 60_000
CONFIG = TelemetryConfig(window_ms=W, allowed_lateness_ms=10_000)
RULES = RulesConfig.default()
HOST = "gpu-node-07"
GiB = 1024**3


def gpu(index: int = 0, **readings: Any) -> GpuSample:
    values: dict[str, Any] = dict(
        index=index, uuid=f"GPU-{index}", name="NVIDIA H100 80GB HBM3",
        utilization_gpu_percent=50, utilization_memory_percent=20,
        memory_used_bytes=40 * GiB, memory_total_bytes=80 * GiB, temperature_c=60,
        power_draw_w=350.0, power_limit_w=700.0, sm_clock_mhz=1980, memory_clock_mhz=2619,
        throttle_reasons=0, throttle_reason_names=[], ecc_volatile_corrected=0,
        ecc_volatile_uncorrected=0, xid_errors=[], pcie_tx_kb_per_s=100, pcie_rx_kb_per_s=200,
        processes=[], error=None)
    values.update(readings)
    return GpuSample(**values)


def host_metrics(**overrides: Any) -> HostMetrics:
    values: dict[str, Any] = dict(
        cpu_percent=30.0, cpu_percent_per_core=[30.0], load_1m=1.5, load_5m=1.0, load_15m=0.5,
        memory_total_bytes=100 * GiB, memory_used_bytes=40 * GiB,
        memory_available_bytes=60 * GiB, memory_percent=40.0, swap_total_bytes=0,
        swap_used_bytes=0, swap_percent=0.0, disk_read_bytes_per_s=1e6,
        disk_write_bytes_per_s=None, net_sent_bytes_per_s=2e6, net_recv_bytes_per_s=3e6)
    values.update(overrides)
    return HostMetrics(**values)


def sample(t: int, gpus: Sequence[GpuSample] = (), host: str = HOST,
           models: Sequence[str] = ("fraud-detector",), **overrides: Any) -> TelemetrySample:
    values: dict[str, Any] = dict(
        host=host, event_time=t, interval_seconds=5.0, models=list(models), gpu_source="nvml",
        gpu_error=None, gpus=list(gpus), host_metrics=host_metrics(), processes=[], dropped=0)
    values.update(overrides)
    return TelemetrySample(**values)


def replay_gpus(n: int) -> list[list[GpuSample]]:
    sampler = GpuSampler(ReplayBackend.shipped("h100x2"))
    sampler.start()
    try:
        return [sampler.sample() for _ in range(n)]
    finally:
        sampler.close()


def run(messages: Sequence[TelemetryMessage], config: TelemetryConfig = CONFIG,
        ) -> tuple[TelemetryWindows, list[Any], list[Any]]:
    windows = TelemetryWindows(config)
    late, closed = windows.apply(list(enumerate(messages)))
    return windows, late, closed


# --- aggregates --------------------------------------------------------------------------

def expected_stats(values: list[float | None]) -> tuple[int, int, float, float, float]:
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    return (len(present), len(values) - len(present), float(np.mean(present)),
            float(np.max(present)), float(np.quantile(present, 0.95)))


def test_gpu_and_host_aggregates_are_exact_against_numpy() -> None:
    readings = replay_gpus(20)  # 12 samples to a window at 5 s: windows 0 and 1 (part)
    rng = np.random.default_rng(3)
    samples = [sample(T0 + i * 5000, gpus, host_metrics=host_metrics(
        cpu_percent=float(rng.uniform(0, 100)),
        load_1m=None if i % 5 == 0 else float(rng.uniform(0, 8))))
               for i, gpus in enumerate(readings)]
    _, late, closed = run([*samples, sample(T0 + 2 * W + 10_000)])
    assert late == []
    assert [c.host.window_start for c in closed] == [T0, T0 + W]
    for window, part in zip(closed, (samples[:12], samples[12:]), strict=True):
        assert window.host.samples == len(part)
        for name, read in HOST_METRICS.items():
            got = window.host.metrics[name]
            values = [read(s.host_metrics) for s in part]
            if all(v is None for v in values):
                assert (got.count, got.mean, got.max, got.p95) == (0, None, None, None)
                assert got.nulls == len(part)
                continue
            count, nulls, mean, top, p95 = expected_stats(values)
            assert (got.count, got.nulls, got.max) == (count, nulls, top)
            assert got.mean == pytest.approx(mean, rel=1e-12)
            assert got.p95 == pytest.approx(p95, rel=1e-12)
        for row in window.gpus:
            gpus = [g for s in part for g in s.gpus if g.index == row.gpu_index]
            assert row.samples == len(gpus)
            for name, read in GPU_METRICS.items():
                values = [read(g) for g in gpus]
                got = row.metrics[name]
                if all(v is None for v in values):  # GPU 1 is in MIG mode: no utilisation
                    assert (got.count, got.nulls, got.p95) == (0, len(gpus), None)
                    continue
                count, nulls, mean, top, p95 = expected_stats(values)
                assert (got.count, got.nulls, got.max) == (count, nulls, top)
                assert got.mean == pytest.approx(mean, rel=1e-12)
                assert got.p95 == pytest.approx(p95, rel=1e-12)
    gpu0 = closed[0].gpus[0]
    # The recording: samples 8-13 at the power cap, 11-12 also thermally slowed.
    assert (gpu0.throttled_samples, gpu0.power_thermal_samples) == (4, 4)
    assert gpu0.throttle_reasons == ("gpu_idle", "sw_power_cap", "sw_thermal_slowdown")
    assert gpu0.metrics["memory_used_percent"].max == pytest.approx(
        max(g[0].memory_used_bytes / g[0].memory_total_bytes * 100 for g in readings[:12]))
    assert closed[0].gpus[1].null_counts["utilization_gpu_percent"] == 12
    assert gpu0.null_counts["xid_errors"] == 0
    assert (gpu0.gpu_uuid, gpu0.gpu_name) == ("GPU-5d2f8a3c-91e4-4b7a-a0c6-3e8f1d2b7c90",
                                              "NVIDIA H100 80GB HBM3")


def test_xid_errors_and_ecc_increase_across_windows_and_a_driver_reload() -> None:
    counts = [0, 0, 4, 4, 6, 1, 3]  # 6 -> 1: a reload; the count restarts from 0
    messages = [sample(T0 + i * 20_000, [gpu(0, ecc_volatile_corrected=c,
                                             ecc_volatile_uncorrected=None,
                                             xid_errors=[63, 63] if i == 2 else [])])
                for i, c in enumerate(counts)]
    _, _, closed = run([*messages, HostWatermark(HOST, T0 + 10 * W)])
    rows = [c.gpus[0] for c in closed]
    # Windows: samples 0-2, 3-5, 6.
    assert [r.ecc_corrected for r in rows] == [4, 0 + 2 + 1, 2]
    assert [r.ecc_uncorrected for r in rows] == [0, 0, 0]
    assert [r.null_counts["ecc_volatile_uncorrected"] for r in rows] == [3, 3, 1]
    assert [(r.xid_errors, r.xid_codes) for r in rows] == [(2, (63,)), (0, ()), (0, ())]


def test_a_new_gpu_in_a_slot_starts_its_ecc_count_afresh() -> None:
    _, _, closed = run([sample(T0, [gpu(0, ecc_volatile_uncorrected=5)]),
                        sample(T0 + 5000, [gpu(0, uuid="GPU-new", ecc_volatile_uncorrected=9)]),
                        sample(T0 + 10_000, [gpu(0, uuid="GPU-new", ecc_volatile_uncorrected=10)]),
                        HostWatermark(HOST, T0 + 2 * W)])
    assert closed[0].gpus[0].ecc_uncorrected == 1


def test_models_per_gpu_from_serving_processes_else_the_host() -> None:
    processes = [ProcessSample(pid=41873, name="tritonserver", model="fraud-detector",
                               cpu_percent=None, rss_bytes=None, gpu_memory_bytes=None),
                 ProcessSample(pid=42011, name="python3", model="churn-predictor",
                               cpu_percent=None, rss_bytes=None, gpu_memory_bytes=None)]
    on = [gpu(0, processes=[GpuProcess(pid=41873, used_memory_bytes=GiB)]),
          gpu(1, processes=[GpuProcess(pid=42011, used_memory_bytes=None)]),
          gpu(2, processes=None)]
    models = ["churn-predictor", "fraud-detector"]
    _, _, closed = run([sample(T0, on, models=models, processes=processes),
                        sample(T0 + 5000, [gpu(2, processes=None)], models=["ranker"]),
                        HostWatermark(HOST, T0 + 2 * W)])
    (window,) = closed
    assert [g.models for g in window.gpus] == [
        ("fraud-detector",), ("churn-predictor",), ("churn-predictor", "fraud-detector", "ranker")]
    assert window.host.models == ("churn-predictor", "fraud-detector", "ranker")


def test_series_keeps_a_bounded_even_subsample_with_exact_count_mean_and_max() -> None:
    values = np.random.default_rng(1).gamma(2.0, 10.0, 3 * MAX_KEPT + 17)
    series = MetricSeries()
    for value in values:
        series.add(float(value))
    summary = series.summary()
    assert len(series.values) <= MAX_KEPT and series.stride == 4
    assert series.values == [float(v) for v in values[::4]]
    assert (summary.count, summary.max) == (len(values), float(values.max()))
    assert summary.mean == pytest.approx(float(values.mean()), rel=1e-12)
    assert summary.p95 == pytest.approx(float(np.quantile(values, 0.95)), rel=0.02)


# --- event time and lateness -------------------------------------------------------------

def test_out_of_order_within_lateness_counts_and_later_is_late() -> None:
    windows, late, closed = run([
        sample(T0 + 55_000), sample(T0 + 65_000),
        sample(T0 + 50_000),  # window 0 still open: 65 s - 10 s < 60 s
        sample(T0 + 70_000),  # closes window 0
        sample(T0 + 45_000),  # late
    ])
    assert [(c.host.window_start, c.host.samples) for c in closed] == [(T0, 2)]
    assert [(r.model, r.version, r.window_start, r.offset, r.count) for r in late] == [
        (HOST, "", T0, 4, 1)]
    assert windows.open_windows == 1


def test_hosts_have_their_own_event_time() -> None:
    _, late, closed = run([sample(T0 + 5 * W, host="fast"), sample(T0, host="slow"),
                           sample(T0 + 5000, host="slow")])
    assert late == [] and closed == []


def test_watermark_closes_a_quiet_host_and_unknown_hosts_are_ignored() -> None:
    windows, _, _ = run([sample(T0 + 1000), sample(T0 + W + 1000)])
    assert windows.idle_watermark(HOST) == T0 + 2 * W + 10_000
    assert windows.idle_watermark("other") is None
    late, closed = windows.apply([(2, HostWatermark("other", T0 + 9 * W)),
                                  (3, HostWatermark(HOST, T0 + 2 * W + 10_000))])
    assert late == [] and [c.host.window_start for c in closed] == [T0, T0 + W]
    assert [c.windows_seen for c in closed] == [1, 2]
    assert windows.open_windows == 0 and "other" not in windows.event_time


def test_state_is_bounded_and_quiet_hosts_are_forgotten() -> None:
    config = dataclasses.replace(CONFIG, host_ttl_ms=10 * W)
    windows = TelemetryWindows(config)
    gone = [sample(T0, [gpu(0, ecc_volatile_corrected=1)], host="gone"),
            HostWatermark("gone", T0 + 2 * W)]
    windows.apply(enumerate(gone))
    for i in range(2, 400):  # 400 windows of another host, a sample every 10 s
        for j in range(6):
            windows.apply([(i * 10 + j, sample(T0 + i * W + j * 10_000))])
            assert windows.open_windows <= 2
    assert set(windows.event_time) == {HOST}
    assert "gone" not in orjson.dumps(windows.to_state()).decode()


# --- batching and checkpoints ------------------------------------------------------------

def messages_strategy() -> st.SearchStrategy[list[TelemetryMessage]]:
    reading = st.one_of(st.none(), st.integers(0, 100))
    one = st.tuples(st.sampled_from(["a", "b"]), st.integers(-30, 60), reading, reading,
                    st.integers(0, 3), st.booleans())

    def build(specs: list[tuple[str, int, int | None, int | None, int, bool]]
              ) -> list[TelemetryMessage]:
        out: list[TelemetryMessage] = []
        clock = {"a": 0, "b": 0}
        for host, step, temperature, memory, ecc, watermark in specs:
            clock[host] += step * 1000  # steps back in time make late and reordered samples
            t = T0 + clock[host]
            if watermark:
                out.append(HostWatermark(host, t))
                continue
            names = ["sw_power_cap"] if temperature and temperature > 80 else []
            out.append(sample(t, [gpu(0, temperature_c=temperature,
                                      ecc_volatile_uncorrected=ecc,
                                      throttle_reason_names=names,
                                      xid_errors=[79] if temperature == 100 else [])],
                              host=host, host_metrics=host_metrics(
                                  memory_percent=float(memory or 0))))
        return out

    return st.lists(one, min_size=1, max_size=80).map(build)


def apply_in_batches(messages: list[TelemetryMessage], cuts: list[int]) -> TelemetryResult:
    state = TelemetryPartition.new(CONFIG, RULES)
    total = TelemetryResult()
    bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        result = state.apply([(i, messages[i]) for i in range(lo, hi)])
        for name in ("late", "gpu_rows", "host_rows", "alerts"):
            getattr(total, name).extend(getattr(result, name))
        state = TelemetryPartition.from_bytes(state.to_bytes(), CONFIG, RULES)
    return total


@given(messages_strategy(), st.lists(st.integers(0, 200), max_size=10))
def test_any_batching_with_checkpoints_gives_identical_rows(
        messages: list[TelemetryMessage], cuts: list[int]) -> None:
    one_by_one = apply_in_batches(messages, list(range(len(messages))))
    assert apply_in_batches(messages, cuts) == one_by_one
    assert apply_in_batches(messages, []) == one_by_one


def test_checkpoint_mid_window_round_trips_exactly() -> None:
    readings = replay_gpus(20)
    messages: list[TelemetryMessage] = [sample(T0 + i * 5000, g) for i, g in enumerate(readings)]
    state = TelemetryPartition.new(CONFIG, RULES)
    state.apply(enumerate(messages[:7]))
    restored = TelemetryPartition.from_bytes(state.to_bytes(), CONFIG, RULES)
    assert restored.to_bytes() == state.to_bytes()
    rest = [*list(enumerate(messages))[7:], (20, HostWatermark(HOST, T0 + 5 * W))]
    assert restored.apply(rest) == state.apply(rest)


# --- rules and incidents -----------------------------------------------------------------

def window_samples(w: int, temperature: int = 60, **gpu_readings: Any) -> list[TelemetrySample]:
    return [sample(T0 + w * W + i * 5000, [gpu(0, temperature_c=temperature, **gpu_readings),
                                           gpu(1)])
            for i in range(12)]


def judge(windows: Sequence[list[TelemetrySample]]) -> TelemetryResult:
    messages: list[TelemetryMessage] = [s for part in windows for s in part]
    messages.append(HostWatermark(HOST, T0 + (len(windows) + 1) * W))
    return TelemetryPartition.new(CONFIG, RULES).apply(enumerate(messages))


def test_infrastructure_rules_are_in_the_defaults() -> None:
    expected = {"gpu_temperature_c": (83, 90), "gpu_memory_percent": (90, 97),
                "gpu_xid_errors": (None, 1), "gpu_ecc_uncorrected": (None, 1),
                "gpu_throttled_share": (0.5, None), "host_memory_percent": (90, 97),
                "host_cpu_percent": (90, 98)}
    for metric, levels in expected.items():
        rule = RULES.thresholds(HOST, "gpu0", metric)
        assert (rule.warn, rule.critical) == levels
        assert (rule.category, rule.direction, rule.min_count, rule.min_windows) == (
            "infrastructure", "above", 1, 1)
        assert rule.enabled == (metric != "host_cpu_percent")


def test_a_hot_gpu_opens_one_incident_and_resolves_after_good_windows() -> None:
    hot = [window_samples(w, 92 if w in (1, 2) else 65) for w in range(7)]
    alerts = judge(hot).alerts
    assert [(a.state, a.severity) for a in alerts] == [("open", "critical"),
                                                       ("resolved", "critical")]
    opened, resolved = alerts
    assert opened.dedup_key == resolved.dedup_key == "infrastructure:gpu-node-07::gpu0"
    assert (opened.model, opened.version, opened.feature, opened.metric) == (
        HOST, "", "gpu0", "gpu_temperature_c")
    assert (opened.value, opened.threshold) == (92.0, 90.0)
    assert (opened.first_seen, opened.window_start, resolved.window_start) == (
        T0 + W, T0 + 2 * W, T0 + 5 * W)
    assert opened.key == HOST.encode()
    # gpu0 has no process attribution: the host's models, over the window's samples.
    assert opened.summary == ("gpu-node-07 gpu0 (serves fraud-detector): gpu_temperature_c "
                              "92 ≥ critical 90 since 2025-11-27 08:01 UTC")
    assert resolved.summary == ("gpu-node-07 gpu0 (serves fraud-detector): back to normal "
                                "(gpu_temperature_c 65 < warning 83); bad since "
                                "2025-11-27 08:01 UTC")


def test_one_hot_window_is_not_an_incident_but_one_xid_error_is() -> None:
    assert judge([window_samples(0), window_samples(1, 95), window_samples(2)]).alerts == []
    parts = [window_samples(0), window_samples(1), window_samples(2)]
    parts[1][4] = sample(T0 + W + 20_000, [gpu(0, xid_errors=[79]), gpu(1)])
    (alert,) = judge(parts).alerts
    assert (alert.state, alert.severity, alert.metric, alert.value) == (
        "open", "critical", "gpu_xid_errors", 1.0)
    assert alert.summary.startswith("gpu-node-07 gpu0 (serves fraud-detector): "
                                    "gpu_xid_errors 1 ≥ critical 1 since")


def test_host_memory_throttling_and_unreported_readings() -> None:
    full = [dataclasses.replace(s, host_metrics=host_metrics(memory_percent=98.0))
            for w in range(2) for s in window_samples(w)]
    (alert,) = judge([full[:12], full[12:]]).alerts
    assert (alert.dedup_key, alert.severity) == ("infrastructure:gpu-node-07::host", "critical")
    throttled = [window_samples(w, throttle_reason_names=["sw_power_cap"]) for w in range(2)]
    (alert,) = judge(throttled).alerts
    assert (alert.metric, alert.value, alert.severity) == ("gpu_throttled_share", 1.0,
                                                           "warning")
    _, _, (closed,) = run([sample(T0, [gpu(0, xid_errors=None, temperature_c=None,
                                           throttle_reason_names=None)]),
                           HostWatermark(HOST, T0 + 2 * W)])
    judged = {(s.feature, s.metric) for s in scores(closed)}
    assert judged == {("gpu0", "gpu_memory_percent"), ("gpu0", "gpu_ecc_uncorrected"),
                      ("host", "host_memory_percent"), ("host", "host_cpu_percent")}


def test_rules_file_overrides_per_host_and_gpu() -> None:
    rules = RulesConfig.from_toml(
        f'[models."{HOST}".features.gpu0.metrics.gpu_temperature_c]\nwarn = 70\n'
        "[metrics.host_cpu_percent]\nenabled = true\n")
    assert rules.thresholds(HOST, "gpu0", "gpu_temperature_c").warn == 70
    assert rules.thresholds(HOST, "gpu1", "gpu_temperature_c").warn == 83
    assert rules.thresholds(HOST, "host", "host_cpu_percent").enabled


# --- wire, ClickHouse columns --------------------------------------------------------------

def test_decode_samples_watermarks_and_bad_messages() -> None:
    s = sample(T0, [gpu(0)])
    assert decode_telemetry_message(s.key, s.to_json()) == s
    mark = HostWatermark(HOST, T0)
    assert decode_telemetry_message(HOST.encode(), mark.to_json()) == mark
    with pytest.raises(BadMessage, match="equal to the message key"):
        decode_telemetry_message(b"other", mark.to_json())
    with pytest.raises(BadMessage, match="UTC epoch milliseconds"):
        decode_telemetry_message(HOST.encode(),
                                 b'{"type":"watermark","host":"gpu-node-07","event_time":"x"}')
    with pytest.raises(BadMessage, match="expected a telemetry object"):
        decode_telemetry_message(HOST.encode(), b'{"type":"prediction"}')
    twice = sample(T0, [gpu(0), gpu(0)])
    with pytest.raises(BadMessage, match=r"'gpus\[1\].index' 0 is repeated"):
        decode_telemetry_message(twice.key, twice.to_json())
    huge = sample(T0, [gpu(0, xid_errors=[2**40])])
    with pytest.raises(BadMessage, match="send NVML's XID codes"):
        decode_telemetry_message(huge.key, huge.to_json())


def ddl_columns(ddl: str) -> list[str]:
    body = ddl.split("(", 1)[1].rsplit(")\nENGINE", 1)[0]
    names = [line.split()[0] for line in body.strip().splitlines()
             if line.strip() and not line.strip().startswith("--")]
    return [n for n in names if n != "written_at"]


def test_columns_match_the_tables_and_rows() -> None:
    assert ddl_columns(GPU_WINDOWS) == GPU_COLUMNS
    assert ddl_columns(HOST_WINDOWS) == HOST_COLUMNS
    for ddl in (GPU_WINDOWS, HOST_WINDOWS):
        assert re.search(r"ORDER BY \(host, (gpu_index, )?window_start\)", ddl)
        assert all("COMMENT" in line for line in ddl.splitlines() if line.startswith("    ")
                   and not line.strip().startswith("--"))
    _, _, (closed,) = run([sample(T0, [gpu(0), gpu(1)]), HostWatermark(HOST, T0 + 2 * W)])
    gpus, host = gpu_columns(closed.gpus, 7), host_columns([closed.host], 7)
    assert len(gpus) == len(GPU_COLUMNS) and all(len(c) == 2 for c in gpus)
    assert len(host) == len(HOST_COLUMNS) and all(len(c) == 1 for c in host)
    row = dict(zip(GPU_COLUMNS, (c[0] for c in gpus), strict=True))
    assert (row["temperature_c_max"], row["power_percent_mean"], row["revision"]) == (
        60.0, 50.0, 7)
    assert row["null_counts"]["xid_errors"] == 0
    assert isinstance(closed.gpus[0], GpuWindowRow)


# --- the processor, with fakes for Faust's table and topics -------------------------------

class FakeStore:
    def __init__(self) -> None:
        self.gpu_rows: list[Any] = []
        self.host_rows: list[Any] = []

    async def write(self, gpus: Sequence[Any], hosts: Sequence[Any], revision: int) -> None:
        self.gpu_rows += gpus
        self.host_rows += hosts


async def test_processor_dead_letters_replays_and_checkpoints() -> None:
    table, dead, alerts, store = FakeTable(), FakeTopic(), FakeTopic(), FakeStore()
    batches: list[Any] = []

    async def write_rows(batch: Any) -> None:
        batches.append(batch)

    processor = TelemetryWindowProcessor(Settings(), table, dead, alerts,
                                         write_rows, RULES)
    processor.store = store
    values = [sample(T0 + i * 5000, [gpu(0, temperature_c=95)]).to_json() for i in range(40)]
    values[3] = b"{not json"
    events = [FakeEvent(FakeMessage(1, i, HOST.encode(), v)) for i, v in enumerate(values)]
    await processor.process(events[:20])
    await processor.process(events)  # a replay of the first 20
    assert processor.stats.replayed_messages == 20 and processor.stats.dead_letters == 1
    assert dead.sent == [(HOST.encode(), b"{not json")]
    assert [r.window_start for r in store.host_rows] == [T0, T0 + W, T0 + 2 * W]
    assert [orjson.loads(v)["state"] for _, v in alerts.sent] == ["open"]
    assert table.changelog == [(1, b"telemetry-1"), (1, b"telemetry-1")]
    assert processor.idle_watermarks(now=1e12) == [(1, HOST, T0 + 4 * W + 10_000)]
    restored = TelemetryWindowProcessor(Settings(), table, dead, alerts,
                                        write_rows, RULES)
    assert restored.idle_watermarks(now=1e12) == []  # adopted now, idle only later
    assert restored.idle_watermarks(now=2e12) == [(1, HOST, T0 + 4 * W + 10_000)]


async def test_a_source_restored_by_a_batch_of_replays_still_goes_idle() -> None:
    # After a restart the first batch may hold only replays: the state is loaded then,
    # and the hosts it holds must still get their windows closed when they stay quiet.
    table, dead, alerts = FakeTable(), FakeTopic(), FakeTopic()

    async def write_rows(batch: Any) -> None:
        pass

    first = TelemetryWindowProcessor(Settings(), table, dead, alerts, write_rows, RULES)
    first.store = FakeStore()
    events = [FakeEvent(FakeMessage(1, i, HOST.encode(), sample(T0 + i * 5000, [gpu(0)]).to_json()))
              for i in range(10)]
    await first.process(events)
    restored = TelemetryWindowProcessor(Settings(), table, dead, alerts, write_rows, RULES)
    restored.store = FakeStore()
    await restored.process(events[5:])  # replays only
    assert restored.stats.replayed_messages == 5
    assert restored.idle_watermarks(now=1e12) == []  # quiet from this check on
    assert restored.idle_watermarks(now=2e12) == [(1, HOST, T0 + W + 10_000)]


def test_worker_attaches_the_telemetry_agent(tmp_path: object) -> None:
    settings = Settings(app_id="telemetry-assembly", telemetry_topic="t", partitions=3,
                        state_dir=str(tmp_path))
    worker = create_worker(settings)
    names = {agent.name.split(".")[-1] for agent in worker.app.agents.values()}
    assert {"track_feature_windows", "track_telemetry"} <= names
    assert worker.telemetry.config == TelemetryConfig(window_ms=60_000, allowed_lateness_ms=10_000)
