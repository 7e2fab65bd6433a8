"""GPU and host telemetry end to end on the embedded stack: telemetry samples -> Kafka ->
a real ``driftline worker`` process -> exact ``gpu_windows`` / ``host_windows`` rows,
late samples and dead letters counted, and infrastructure alerts in ClickHouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from driftline.models.telemetry.sample import (
    GpuProcess,
    GpuSample,
    HostMetrics,
    ProcessSample,
    TelemetrySample,
)
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000  # 2025-11-27 08:00 UTC, a window start
HOST = "gpu-node-07"
WINDOWS = 7
HOT = (2, 3)  # gpu0 above 90 C: an incident opens when window 3 closes, resolves after 6
XID_WINDOW = 1  # one XID error on gpu1: an incident at once, resolved after window 4
GiB = 1024**3


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings()


def make_samples(seed: int = 7) -> list[TelemetrySample]:
    """12 samples a window (every 5 s) of a host with two GPUs: gpu0 serves fraud-detector
    (and runs hot in HOT), gpu1 churn-predictor, in MIG mode (no utilisation)."""
    rng = np.random.default_rng(seed)
    processes = [ProcessSample(pid=41873, name="tritonserver", model="fraud-detector",
                               cpu_percent=None, rss_bytes=None, gpu_memory_bytes=None),
                 ProcessSample(pid=42011, name="python3", model="churn-predictor",
                               cpu_percent=None, rss_bytes=None, gpu_memory_bytes=None)]
    out = []
    for i in range(WINDOWS * 12):
        w = i // 12
        hot = w in HOT
        gpus = [gpu(0, 92 + int(rng.integers(0, 4)) if hot else 55 + int(rng.integers(0, 15)),
                    rng, pid=41873, throttle=["sw_thermal_slowdown"] if hot else [],
                    ecc_corrected=2 if w >= 4 else 0),
                gpu(1, 50 + int(rng.integers(0, 5)), rng, pid=42011, throttle=[],
                    xids=[79] if (w, i % 12) == (XID_WINDOW, 6) else [], utilization=False)]
        host = HostMetrics(
            cpu_percent=float(rng.uniform(5, 95)), cpu_percent_per_core=[], load_1m=float(
                rng.uniform(0, 8)), load_5m=None, load_15m=None, memory_total_bytes=512 * GiB,
            memory_used_bytes=200 * GiB, memory_available_bytes=312 * GiB,
            memory_percent=float(rng.uniform(30, 60)), swap_total_bytes=0, swap_used_bytes=0,
            swap_percent=0.0, disk_read_bytes_per_s=float(rng.uniform(0, 1e7)),
            disk_write_bytes_per_s=None, net_sent_bytes_per_s=float(rng.uniform(0, 1e8)),
            net_recv_bytes_per_s=None if i % 4 == 0 else float(rng.uniform(0, 1e8)))
        out.append(TelemetrySample(
            host=HOST, event_time=T0 + i * 5000, interval_seconds=5.0,
            models=["churn-predictor", "fraud-detector"], gpu_source="nvml", gpu_error=None,
            gpus=gpus, host_metrics=host, processes=processes, dropped=0))
    return out


def gpu(index: int, temperature: int, rng: np.random.Generator, *, pid: int,
        throttle: list[str], ecc_corrected: int = 0, xids: list[int] | None = None,
        utilization: bool = True) -> GpuSample:
    return GpuSample(
        index=index, uuid=f"GPU-{index}", name="NVIDIA H100 80GB HBM3",
        utilization_gpu_percent=int(rng.integers(20, 100)) if utilization else None,
        utilization_memory_percent=int(rng.integers(10, 60)) if utilization else None,
        memory_used_bytes=int(rng.integers(10, 70)) * GiB, memory_total_bytes=80 * GiB,
        temperature_c=temperature, power_draw_w=float(rng.uniform(100, 700)),
        power_limit_w=700.0, sm_clock_mhz=1980, memory_clock_mhz=2619,
        throttle_reasons=None, throttle_reason_names=throttle,
        ecc_volatile_corrected=ecc_corrected, ecc_volatile_uncorrected=0,
        xid_errors=xids or [], pcie_tx_kb_per_s=100, pcie_rx_kb_per_s=200,
        processes=[GpuProcess(pid=pid, used_memory_bytes=None)], error=None)


async def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(settings.telemetry_topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def query(client: Client, sql: str) -> list[tuple[Any, ...]]:
    try:
        return list(client.query(sql).result_rows)
    except Exception as exc:
        if "UNKNOWN_DATABASE" in str(exc) or "UNKNOWN_TABLE" in str(exc):
            return []
        raise


def stats(values: list[float | None]) -> tuple[float, float, float]:
    x = np.array([v for v in values if v is not None], dtype=np.float64)
    return float(x.mean()), float(x.max()), float(np.quantile(x, 0.95))


def wait_for_everything(clickhouse: Client, db: str, worker: WorkerProcess) -> None:
    """Every window's rows and the four alerts; the last window closes by the idle
    watermark, 2 s after the last sample."""
    deadline = time.monotonic() + 120
    while len(query(clickhouse, f"SELECT 1 FROM {db}.gpu_windows FINAL")) < 2 * WINDOWS or \
            len(query(clickhouse, f"SELECT 1 FROM {db}.alerts FINAL")) < 4:
        assert time.monotonic() < deadline, worker.log_tail()
        assert worker.is_running(), worker.log_tail()
        time.sleep(0.5)
    time.sleep(4 * 0.5)  # four checkpoints: a second write would show up now


def test_telemetry_windows_rows_and_an_infrastructure_alert(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    samples = make_samples()
    messages = [(HOST.encode(), s.to_json()) for s in samples]
    messages.insert(30, (HOST.encode(), b"{not json"))
    messages.append((HOST.encode(), samples[3].to_json()))  # window 0 closed long ago: late
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(produce(settings, messages))
        wait_for_everything(clickhouse, settings.clickhouse_database, worker)
    finally:
        worker.stop()
    assert_rows_and_alerts(clickhouse, settings, samples)
    db = settings.clickhouse_database
    assert query(clickhouse, f"SELECT model, model_version, toUnixTimestamp64Milli("
                             f"window_start), late_events FROM {db}.late_events FINAL") == [
        (HOST, "", T0, 1)]
    letters = query(clickhouse, f"SELECT source_topic, reason FROM {db}.dead_letters FINAL")
    assert [(t, r.startswith("not valid JSON")) for t, r in letters] == [
        (settings.telemetry_topic, True)]


def test_a_worker_crash_mid_incident_loses_and_repeats_nothing(
        settings: Settings, clickhouse: Client, tmp_path: Path) -> None:
    samples = make_samples()
    messages = [(HOST.encode(), s.to_json()) for s in samples]
    db = settings.clickhouse_database
    # No idle watermark from the first worker: on a loaded machine it could close the
    # half-sent window before the kill, and the rest of that window would then be late.
    first = WorkerProcess(settings.replace(idle_close_seconds=600.0),
                          tmp_path / "worker-1.log").start()
    try:  # up to the middle of the first hot window: its incident is pending
        asyncio.run(produce(settings, messages[:2 * 12 + 6]))
        deadline = time.monotonic() + 60
        while len(query(clickhouse, f"SELECT 1 FROM {db}.host_windows FINAL")) < 2:
            assert time.monotonic() < deadline and first.is_running(), first.log_tail()
            time.sleep(0.5)
    finally:
        first.kill()
    asyncio.run(produce(settings, messages[2 * 12 + 6:]))
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        wait_for_everything(clickhouse, db, second)
    finally:
        second.stop()
    assert_rows_and_alerts(clickhouse, settings, samples)
    assert query(clickhouse, f"SELECT count() FROM {db}.late_events") == [(0,)]


def assert_rows_and_alerts(clickhouse: Client, settings: Settings,
                           samples: list[TelemetrySample]) -> None:
    db = settings.clickhouse_database
    by_window = [samples[w * 12:(w + 1) * 12] for w in range(WINDOWS)]

    gpu_rows = query(clickhouse, (
        "SELECT gpu_index, toUnixTimestamp64Milli(window_start), toUnixTimestamp64Milli("
        "window_end), gpu_uuid, models, samples, temperature_c_mean, temperature_c_max, "
        "temperature_c_p95, utilization_gpu_percent_mean, utilization_gpu_percent_p95, "
        "power_percent_max, memory_used_percent_p95, null_counts, throttled_samples, "
        "power_thermal_samples, throttle_reasons, xid_errors, xid_codes, ecc_corrected, "
        f"ecc_uncorrected FROM {db}.gpu_windows FINAL ORDER BY gpu_index, window_start"))
    assert len(gpu_rows) == 2 * WINDOWS
    for (index, start, end, uuid, models, n, *measured, nulls, throttled, power_thermal,
         reasons, xids, codes, ecc_c, ecc_u) in gpu_rows:
        w = (start - T0) // W
        gpus = [s.gpus[index] for s in by_window[w]]
        assert (end - start, uuid, n) == (W, f"GPU-{index}", 12)
        assert models == (["fraud-detector"] if index == 0 else ["churn-predictor"])
        temperature = stats([g.temperature_c for g in gpus])
        assert measured[:3] == pytest.approx(list(temperature), rel=1e-12)
        if index == 0:
            utilization = stats([g.utilization_gpu_percent for g in gpus])
            assert measured[3:5] == pytest.approx([utilization[0], utilization[2]], rel=1e-12)
        else:
            assert measured[3:5] == [None, None]
            assert nulls["utilization_gpu_percent"] == 12
        power = max((g.power_draw_w or 0) / 700.0 * 100 for g in gpus)
        assert measured[5] == pytest.approx(power, rel=1e-12)
        memory = stats([(g.memory_used_bytes or 0) / (80 * GiB) * 100 for g in gpus])
        assert measured[6] == pytest.approx(memory[2], rel=1e-12)
        hot = index == 0 and w in HOT
        assert (throttled, power_thermal, reasons) == (
            (12, 12, ["sw_thermal_slowdown"]) if hot else (0, 0, []))
        xid = index == 1 and w == XID_WINDOW
        assert (xids, codes) == ((1, [79]) if xid else (0, []))
        assert (ecc_c, ecc_u) == (2 if (index, w) == (0, 4) else 0, 0)

    host_rows = query(clickhouse, (
        "SELECT toUnixTimestamp64Milli(window_start), models, samples, cpu_percent_mean, "
        "cpu_percent_max, cpu_percent_p95, memory_percent_p95, net_recv_bytes_per_s_mean, "
        f"disk_write_bytes_per_s_max, null_counts FROM {db}.host_windows FINAL "
        "ORDER BY window_start"))
    assert [r[0] for r in host_rows] == [T0 + w * W for w in range(WINDOWS)]
    for (_, models, n, *measured, nulls), part in zip(host_rows, by_window, strict=True):
        hosts = [s.host_metrics for s in part]
        assert (models, n) == (["churn-predictor", "fraud-detector"], 12)
        cpu = stats([h.cpu_percent for h in hosts])
        assert measured[:3] == pytest.approx(list(cpu), rel=1e-12)
        assert measured[3] == pytest.approx(stats([h.memory_percent for h in hosts])[2],
                                            rel=1e-12)
        assert measured[4] == pytest.approx(
            stats([h.net_recv_bytes_per_s for h in hosts])[0], rel=1e-12)
        assert measured[5] is None
        assert (nulls["net_recv_bytes_per_s"], nulls["disk_write_bytes_per_s"]) == (3, 12)

    alerts = query(clickhouse, (
        "SELECT dedup_key, state, severity, model, model_version, feature, metric, "
        "toUnixTimestamp64Milli(first_seen), toUnixTimestamp64Milli(window_start), summary "
        f"FROM {db}.alerts FINAL ORDER BY window_start, dedup_key"))
    assert [a[:7] for a in alerts] == [
        ("infrastructure:gpu-node-07::gpu1", "open", "critical", HOST, "", "gpu1",
         "gpu_xid_errors"),
        ("infrastructure:gpu-node-07::gpu0", "open", "critical", HOST, "", "gpu0",
         "gpu_temperature_c"),
        ("infrastructure:gpu-node-07::gpu1", "resolved", "critical", HOST, "", "gpu1",
         "gpu_xid_errors"),
        ("infrastructure:gpu-node-07::gpu0", "resolved", "critical", HOST, "", "gpu0",
         "gpu_temperature_c"),
    ]
    hot_open = alerts[1]
    assert (hot_open[7], hot_open[8]) == (T0 + HOT[0] * W, T0 + HOT[1] * W)
    assert hot_open[9].startswith("gpu-node-07 gpu0 (serves fraud-detector): "
                                  "gpu_temperature_c 9")
    assert hot_open[9].endswith("≥ critical 90 since 2025-11-27 08:02 UTC")
    assert alerts[3][8] == T0 + 6 * W
