"""Data quality, from the wire to incidents, without servers: each problem injected into
healthy traffic opens one incident of its kind and resolves when it stops."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from driftline.models.alerting.rules import RulesConfig, RulesError
from driftline.models.data_quality.checks import window_checks
from driftline.models.drift.monitor import MonitorConfig
from driftline.models.drift.reference import ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.models.events.wire import EventBlock, decode
from driftline.models.partition import PartitionState
from driftline.models.windows.feature_windows import FeatureWindowRow, WindowConfig

W = 60_000
T0 = 1_764_230_400_000
N = 1000
Corrupt = Callable[[dict[str, list[Any]], np.random.Generator], None]


def reference(seed: int = 1) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, 50_000)
    x[rng.random(x.size) < 0.05] = np.nan  # 5 % missing is normal for x
    c = rng.choice(np.array(["a", "b", "c"]), 50_000)
    return build_profile("m", "v1", {"x": x, "c": c}, created_at_ms=T0)


def envelope(i: int, rng: np.random.Generator, corrupt: Corrupt | None, n: int = N,
             repeats: float = 0.0) -> bytes:
    """One window's envelope; ``repeats``: that share of its events reuse a request id."""
    x = rng.normal(0.0, 1.0, n)
    features: dict[str, list[Any]] = {
        "x": [None if m else v for v, m in zip(x.tolist(), rng.random(n) < 0.05, strict=True)],
        "c": rng.choice(np.array(["a", "b", "c"]), n).tolist()}
    if corrupt is not None:
        corrupt(features, rng)
    times = (T0 + i * W + np.sort(rng.integers(0, W, n))).tolist()
    return orjson.dumps({"type": "prediction_batch", "model": "m", "version": "v1",
                         "request_id": [f"r{i}-{j % round(n * (1 - repeats))}"
                                        for j in range(n)], "event_time": times,
                         "features": features, "score": rng.random(n).tolist()})


def run(corrupt: Corrupt | None, bad_windows: range = range(0), windows: int = 16,
        ref: ReferenceProfile | None = None, seed: int = 0, sizes: dict[int, int] | None = None,
        late: dict[int, int] | None = None, repeats: dict[int, float] | None = None
        ) -> tuple[list[tuple[int, str, str, str]], list[Any]]:
    """Alerts (window, state, dedup key, metric) and data-quality rows of a stream whose
    windows in ``bad_windows`` are corrupted, window i of ``sizes`` holding that many events
    and, after window i of ``late``, that many events sent for the window before it."""
    rng = np.random.default_rng(seed)
    state = PartitionState.new(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                               MonitorConfig(), RulesConfig.default(),
                               references=(lambda m, v: ref) if ref is not None else None)
    alerts, rows = [], []
    for i in range(windows):
        block = decode(b"m", envelope(i, rng, corrupt if i in bad_windows else None,
                                      (sizes or {}).get(i, N), (repeats or {}).get(i, 0.0)))
        blocks = [block]
        if (late or {}).get(i):
            blocks.append(decode(b"m", envelope(i - 2, rng, None, late[i])))
        for b in blocks:
            state.windows.settle_kinds(b)
        _, _, health = state.apply([*((3 * i + k, b) for k, b in enumerate(blocks)), (
            3 * i + 2, EventBlock("watermark", "m", "", [T0 + (i + 1) * W]))])
        alerts += [(i, a.state, a.dedup_key, a.metric) for a in health.alerts
                   if a.dedup_key.startswith("data_quality:")]
        rows += health.data_quality
    return alerts, rows


def strings_in_x(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
    for j in rng.choice(N, 20, replace=False):
        features["x"][j] = "n/a"


def x_goes_missing(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
    features["x"] = [None if rng.random() < 0.3 else v for v in features["x"]]


def sentinels_in_x(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
    for j in rng.choice(N, 100, replace=False):
        features["x"][j] = -999.0


def c_stops(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
    del features["c"]


def z_appears(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
    features["z"] = rng.random(N).tolist()


@pytest.mark.parametrize("baseline", [False, True], ids=["training", "baseline"])
def test_healthy_traffic_opens_nothing(baseline: bool) -> None:
    alerts, rows = run(None, windows=30, ref=None if baseline else reference(), seed=3)
    assert alerts == []
    assert {r.verdict for r in rows} <= {"ok", "not_evaluated"}
    assert {r.check for r in rows} == ({"invalid_share", "missing_increase", "absent",
                                        "out_of_range_increase", "late_share", "volume_drop",
                                        "volume_spike", "duplicate_share"})
    duplicates = [r.value for r in rows if r.check == "duplicate_share"]
    assert len(duplicates) == 30 and max(duplicates) < 0.04  # sketch noise only


@pytest.mark.parametrize(("corrupt", "key", "metric"), [
    (strings_in_x, "data_quality:m:v1:x", "invalid_share"),
    (x_goes_missing, "data_quality:m:v1:x", "missing_increase"),
    (sentinels_in_x, "data_quality:m:v1:x", "out_of_range_increase"),
    (c_stops, "data_quality:m:v1:c", "absent"),
    (z_appears, "data_quality:m:v1:z", "unexpected"),
])
@pytest.mark.parametrize("baseline", [False, True], ids=["training", "baseline"])
def test_each_problem_opens_one_incident_of_its_kind_and_resolves(
        corrupt: Corrupt, key: str, metric: str, baseline: bool) -> None:
    alerts, _ = run(corrupt, bad_windows=range(8, 12), windows=22,
                    ref=None if baseline else reference())
    assert [(s, k, m) for _, s, k, m in alerts] == [("open", key, metric),
                                                    ("resolved", key, metric)]
    (opened, _), (resolved, _) = [(i, s) for i, s, *_ in alerts]
    assert opened == 9  # the second bad window in a row
    assert resolved == 14  # the third good window after the last bad one


def test_a_sudden_drop_in_volume_opens_an_incident_that_resolves() -> None:
    # Windows 8..10 hold a fifth of the traffic; the baseline is the 5 windows before each.
    alerts, rows = run(None, windows=24, ref=reference(), sizes=dict.fromkeys(range(8, 11), 200))
    assert [(i, s, k, m) for i, s, k, m in alerts] == [
        (9, "open", "data_quality:m:v1:(volume)", "volume_drop"),
        (13, "resolved", "data_quality:m:v1:(volume)", "volume_drop")]
    drop = {(r.window_start - T0) // W: r for r in rows if r.check == "volume_drop"}
    assert drop[8].value == pytest.approx(0.8) and drop[8].verdict == "critical"
    assert drop[7].verdict == "ok" and 0 not in drop  # nothing to compare the first with


def test_repeated_request_ids_open_a_volume_incident_that_resolves() -> None:
    # Windows 8..10: a tenth of the events reuse another event's request id (a retry storm).
    alerts, rows = run(None, windows=20, ref=reference(), repeats=dict.fromkeys(range(8, 11), 0.1))
    assert [(i, s, k, m) for i, s, k, m in alerts] == [
        (9, "open", "data_quality:m:v1:(volume)", "duplicate_share"),
        (13, "resolved", "data_quality:m:v1:(volume)", "duplicate_share")]
    share = {(r.window_start - T0) // W: r for r in rows if r.check == "duplicate_share"}
    assert share[9].value == pytest.approx(0.1, abs=0.03) and share[9].verdict == "warning"
    assert share[9].affected == round(share[9].value * share[9].events)


def test_late_arrivals_open_a_timeliness_incident_and_delays_are_reported() -> None:
    # After windows 8..11, 100 events arrive for the window before the last closed one.
    alerts, rows = run(None, windows=20, ref=reference(), late=dict.fromkeys(range(8, 12), 100))
    assert [(i, s, k, m) for i, s, k, m in alerts] == [
        (9, "open", "data_quality:m:v1:(timeliness)", "late_share"),
        (14, "resolved", "data_quality:m:v1:(timeliness)", "late_share")]
    share = {(r.window_start - T0) // W: (r.affected, r.events) for r in rows
             if r.check == "late_share"}
    assert share[8] == (100, N + 100) and share[7] == (0, N)


def test_delays_from_broker_and_read_times() -> None:
    """Event delay = broker time - event time, processing delay = read time - broker time,
    per event, quantiles within the sketch's 1 %."""
    rng = np.random.default_rng(2)
    state = PartitionState.new(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                               MonitorConfig(), RulesConfig.default(), lambda m, v: reference())
    times: list[int] = []
    blocks = []
    for k in range(10):  # ten messages, each sent 1..10 s after its last event
        block = decode(b"m", envelope(0, rng, None, 100))
        state.windows.settle_kinds(block)
        block.broker_time_ms = max(block.event_time) + 1000 * (k + 1)
        block.received_ms = block.broker_time_ms + 50 * (k + 1)
        times += [block.broker_time_ms - t for t in block.event_time]
        blocks.append((k, block))
    blocks.sort(key=lambda kb: kb[1].event_time[0])
    _, _, health = state.apply([*blocks, (10, EventBlock("watermark", "m", "", [T0 + W]))])
    checks = {r.check: r for r in health.data_quality if r.feature == "(timeliness)"}
    delays = np.asarray(times) / 1000
    for level, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
        expected = float(np.quantile(delays, q, method="lower"))
        assert checks[f"event_delay_{level}_seconds"].value == pytest.approx(expected, rel=0.01)
    assert checks["processing_delay_max_seconds"].value == pytest.approx(0.5, rel=0.01)
    assert checks["event_delay_p95_seconds"].verdict == "not_evaluated"  # off by default


def test_invalid_values_keep_their_envelope_and_are_counted_exactly() -> None:
    _, rows = run(strings_in_x, bad_windows=range(3, 4), windows=5, ref=reference())
    invalid = {(r.window_start - T0) // W: (r.affected, r.events) for r in rows
               if r.feature == "x" and r.check == "invalid_share"}
    assert invalid == {0: (0, N), 1: (0, N), 2: (0, N), 3: (20, N), 4: (0, N)}


def test_checks_match_their_definitions() -> None:
    """Each check against numpy on the values themselves."""
    ref = reference()
    rng = np.random.default_rng(7)
    raw = rng.normal(0.5, 1.5, N)
    x: list[Any] = raw.tolist()
    for j in range(0, 100):
        x[j] = None
    for j in range(100, 110):
        x[j] = "bad"
    times = (T0 + np.sort(rng.integers(0, W, N))).tolist()
    doc = {"type": "prediction_batch", "model": "m", "version": "v1",
           "request_id": [f"r{j}" for j in range(N)], "event_time": times,
           "features": {"x": x, "z": ["q"] * N}}
    state = PartitionState.new(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                               MonitorConfig(), RulesConfig.default(), lambda m, v: ref)
    block = decode(b"m", orjson.dumps(doc))
    state.windows.settle_kinds(block)
    state.windows.apply([(0, block), (1, EventBlock("watermark", "m", "", [T0 + W]))])
    window: list[FeatureWindowRow] = state.windows.close_ready()
    checks = {(c.feature, c.check): c for c in window_checks(window, ref)}
    present = raw[110:]
    x_ref = ref.features["x"]
    lo, hi = x_ref.fine_edges[0], x_ref.fine_edges[-1]  # type: ignore[union-attr]
    outside = int(((present < lo) | (present >= hi)).sum())
    expected_missing = x_ref.missing_count / x_ref.count
    assert checks[("x", "invalid_share")].value == 10 / N
    assert checks[("x", "missing_increase")].value == pytest.approx(100 / N - expected_missing)
    assert checks[("x", "out_of_range_increase")].affected == outside
    assert checks[("x", "out_of_range_increase")].value == pytest.approx(outside / present.size)
    assert checks[("c", "absent")].value == 1.0 and checks[("x", "absent")].value == 0.0
    assert checks[("z", "unexpected")].value == 1.0
    assert ("z", "missing_increase") not in checks  # nothing to compare it with


def test_incidents_volumes_spans_and_silence_survive_a_checkpoint() -> None:
    """Stopping after any window and going on from the model's record gives the same
    data-quality alerts and rows as never stopping."""
    ref = reference()
    config = WindowConfig(window_ms=W, allowed_lateness_ms=0)

    def stream() -> list[bytes]:
        rng = np.random.default_rng(6)
        return [envelope(i, rng, strings_in_x if i in range(8, 12) else None,
                         200 if i in (14, 15) else N) for i in range(20)]

    def feed(state: PartitionState, i: int, value: bytes) -> list[Any]:
        block = decode(b"m", value)
        state.windows.settle_kinds(block)
        _, _, health = state.apply([(2 * i, block), (2 * i + 1, EventBlock(
            "watermark", "m", "", [T0 + (i + 1) * W]))])
        return [(a.state, a.dedup_key, a.metric) for a in health.alerts] + [
            (r.feature, r.check, r.value, r.verdict) for r in health.data_quality]

    def fresh() -> PartitionState:
        return PartitionState.new(config, MonitorConfig(), RulesConfig.default(),
                                  lambda m, v: ref)

    messages = stream()
    whole = fresh()
    expected = [feed(whole, i, m) for i, m in enumerate(messages)]
    for stop in (9, 12, 15):
        state, got = fresh(), []
        for i, m in enumerate(messages):
            if i == stop:
                state = PartitionState.from_bytes(state.to_bytes(), config, MonitorConfig(),
                                                  RulesConfig.default(), lambda m, v: ref)
            got.append(feed(state, i, m))
        assert got == expected, stop
    assert any(("open", "data_quality:m:v1:x", "invalid_share") in w for w in expected)


def test_values_outside_a_declared_range_are_counted_exactly_and_open_an_incident() -> None:
    rules = RulesConfig.from_toml('[models."m".features.x]\nrange = [-6, 6]\n')
    assert rules.declared_range("m", "x") == (-6.0, 6.0)
    assert rules.declared_range("m", "c") is None
    rng = np.random.default_rng(8)
    state = PartitionState.new(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                               MonitorConfig(), rules, lambda m, v: reference())
    alerts, outside = [], {}
    for i in range(18):
        raw = envelope(i, rng, strings_in_x if i in range(8, 12) else None)
        doc = orjson.loads(raw)
        if i in range(8, 12):  # a unit change for 3 % of the values: 100x
            doc["features"]["x"] = [v * 100 if isinstance(v, float) and j % 33 == 0 else v
                                    for j, v in enumerate(doc["features"]["x"])]
        values = [v for v in doc["features"]["x"] if isinstance(v, float)]
        outside[i] = sum(not -6 <= v <= 6 for v in values)
        block = decode(b"m", orjson.dumps(doc))
        state.windows.settle_kinds(block)
        _, _, health = state.apply([(2 * i, block), (2 * i + 1, EventBlock(
            "watermark", "m", "", [T0 + (i + 1) * W]))])
        alerts += [(i, a.state, a.metric) for a in health.alerts
                   if a.dedup_key == "data_quality:m:v1:x"]
        (row,) = [r for r in health.data_quality
                  if (r.feature, r.check) == ("x", "out_of_declared_range")]
        assert row.affected == outside[i]
    # The strings in x are invalid too: the incident opens on its worst check.
    assert [(i, s) for i, s, _ in alerts] == [(9, "open"), (14, "resolved")]
    assert {m for *_, m in alerts} <= {"out_of_declared_range", "invalid_share"}


@pytest.mark.parametrize(("text", "message"), [
    ('range = [1]', "expected [low, high]"),
    ('range = [2, 1]', "low 2 must be below high 1"),
    ('range = ["a", 1]', "expected [low, high]"),
])
def test_a_bad_declared_range_is_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=re.escape(message)):
        RulesConfig.from_toml(f'[models."m".features.x]\n{text}\n')


def test_invalid_values_are_not_taken_for_values_of_the_distribution() -> None:
    """Numbers dropped from a categorical feature are missing to drift scoring, not
    categories the reference never saw."""
    def numbers_in_c(features: dict[str, list[Any]], rng: np.random.Generator) -> None:
        for j in range(0, N, 20):
            features["c"][j] = 7

    rng = np.random.default_rng(3)
    state = PartitionState.new(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                               MonitorConfig(), RulesConfig.default(), lambda m, v: reference())
    unseen = []
    for i in range(6):
        block = decode(b"m", envelope(i, rng, numbers_in_c))
        state.windows.settle_kinds(block)
        _, rows, health = state.apply([(2 * i, block), (2 * i + 1, EventBlock(
            "watermark", "m", "", [T0 + (i + 1) * W]))])
        (c,) = [r for r in rows if r.feature == "c"]
        assert (c.invalid_count, c.present) == (N // 20, N - N // 20)
        unseen += [s.value for s in health.scores
                   if (s.feature, s.metric) == ("c", "unseen_share")]
    assert unseen and max(unseen) == 0.0
