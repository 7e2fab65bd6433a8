"""Service windows per model version: requests, latency quantiles and errors from real
window rows (through the wire decoder and PartitionWindows), and their alerts."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import decode
from driftline.models.telemetry.service_monitor import ServiceConfig, ServiceMonitor, service_row
from driftline.models.windows.feature_windows import (
    FeatureWindowRow,
    PartitionWindows,
    WindowConfig,
)

W = 60_000
T0 = 1_764_230_400_000


def window_rows(latency: np.ndarray, status: list[str], i: int = 0,
                times: np.ndarray | None = None) -> list[FeatureWindowRow]:
    """The closed rows of one window whose events carry ``latency`` and ``status``."""
    n = len(latency)
    if times is None:
        times = T0 + i * W + np.sort(np.random.default_rng(i).integers(0, W, n))
    envelope = {"type": "prediction_batch", "model": "m", "version": "v1",
                "event_time": times.tolist(), "request_id": [f"{i}-{j}" for j in range(n)],
                "features": {"x": [1.0] * n}, "latency_ms": latency.tolist(), "status": status}
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0))
    block = decode(b"m", orjson.dumps(envelope))
    state.settle_kinds(block)
    state.apply([(0, block)])
    state.apply([(1, decode(b"m", orjson.dumps({"type": "watermark", "model": "m",
                                                 "event_time": T0 + (i + 1) * W})))])
    return state.close_ready()


def test_a_service_row_holds_requests_latency_quantiles_and_errors() -> None:
    rng = np.random.default_rng(1)
    latency = rng.gamma(4.0, 5.0, 3000)
    status = rng.choice(["ok", "200", "timeout", "500"], 3000, p=[0.9, 0.05, 0.03, 0.02])
    row = service_row(window_rows(latency, status.tolist()), W)
    assert row is not None
    assert (row.requests, row.latency_count) == (3000, 3000)
    assert row.throughput_per_s == pytest.approx(3000 / 60)
    assert row.latency_mean_ms == pytest.approx(latency.mean(), rel=1e-9)
    assert row.latency_max_ms == pytest.approx(latency.max(), rel=1e-9)
    for value, q in ((row.latency_p50_ms, 0.5), (row.latency_p95_ms, 0.95),
                     (row.latency_p99_ms, 0.99)):
        assert value == pytest.approx(np.quantile(latency, q), rel=0.02)  # sketch: 1 %
    statuses, counts = np.unique(status, return_counts=True)
    assert row.status_counts == dict(zip(statuses.tolist(), counts.tolist(), strict=True))
    errors = int(np.isin(status, ["timeout", "500"]).sum())
    assert row.errors == errors
    assert row.error_rate == pytest.approx(errors / 3000)


def test_missing_latencies_are_not_counted_as_zero() -> None:
    latency = np.array([10.0, np.nan, 30.0])
    rows = window_rows(latency, ["ok"] * 3)
    row = service_row(rows, W)
    assert row is not None
    assert (row.requests, row.latency_count, row.latency_mean_ms) == (3, 2, pytest.approx(20.0))


def test_a_window_without_latency_or_status_has_no_service_row() -> None:
    rows = [r for r in window_rows(np.array([1.0]), ["ok"]) if not r.feature.startswith("service.")]
    assert service_row(rows, W) is None


def run(latency_scale: list[float], error_share: list[float],
        monitor: ServiceMonitor | None = None, seed: int = 0) -> list[tuple[int, str, str]]:
    monitor = monitor or ServiceMonitor(ServiceConfig(window_ms=W), RulesConfig.default())
    rng = np.random.default_rng(seed)
    events = []
    for i, (scale, share) in enumerate(zip(latency_scale, error_share, strict=True)):
        latency = rng.gamma(4.0, 5.0, 1000) * scale
        status = np.where(rng.random(1000) < share, "timeout", "ok").tolist()
        _, alerts = monitor.observe(window_rows(latency, status, i))
        events += [(i, a.state, a.dedup_key) for a in alerts]
    return events


def test_a_latency_regression_opens_one_incident_and_resolves_it() -> None:
    scale = [1.0] * 8 + [3.0] * 3 + [1.0] * 4
    assert run(scale, [0.002] * 15) == [
        (9, "open", "service:m:v1:latency"), (13, "resolved", "service:m:v1:latency")]


def test_an_error_burst_opens_an_errors_incident() -> None:
    share = [0.002] * 6 + [0.15] * 2 + [0.002] * 4
    assert run([1.0] * 12, share) == [
        (7, "open", "service:m:v1:errors"), (10, "resolved", "service:m:v1:errors")]


def test_steady_service_raises_nothing() -> None:
    assert run([1.0] * 40, [0.003] * 40, seed=3) == []


def test_an_slo_is_yours_to_set() -> None:
    rules = RulesConfig.from_toml("[metrics.latency_p99_ms]\nwarn = 65.0\n")  # p99 ~ 50
    monitor = ServiceMonitor(ServiceConfig(window_ms=W), rules)
    events = run([1.0] * 3 + [1.6] * 2, [0.0] * 5, monitor)
    assert events == [(4, "open", "service:m:v1:latency")]


def test_a_checkpoint_mid_run_changes_nothing() -> None:
    scale = [1.0] * 8 + [3.0] * 3 + [1.0] * 4
    steady = run(scale, [0.002] * 15)
    first = ServiceMonitor(ServiceConfig(window_ms=W), RulesConfig.default())
    rng_events = run(scale[:9], [0.002] * 9, first)
    restored = ServiceMonitor(ServiceConfig(window_ms=W), RulesConfig.default())
    restored.load_state(orjson.loads(orjson.dumps(first.to_state())))
    rng = np.random.default_rng(0)
    for _ in range(9):  # the same random stream as run() drew for windows 0..8
        rng.gamma(4.0, 5.0, 1000)
        rng.random(1000)
    events = []
    for i in range(9, 15):
        latency = rng.gamma(4.0, 5.0, 1000) * scale[i]
        status = np.where(rng.random(1000) < 0.002, "timeout", "ok").tolist()
        _, alerts = restored.observe(window_rows(latency, status, i))
        events += [(i, a.state, a.dedup_key) for a in alerts]
    assert rng_events + events == steady
