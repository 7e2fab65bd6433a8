"""Closed windows -> drift scores -> rules -> incidents, end to end without servers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.baseline import baseline_profile
from driftline.models.drift.monitor import Monitor, MonitorConfig
from driftline.models.drift.reference_build import build_profile
from driftline.models.drift.spans import Spans
from driftline.models.events.wire import PREDICTION_FEATURE as PREDICTION
from driftline.models.events.wire import EventBlock
from driftline.models.windows.feature_windows import (
    FeatureWindowRow,
    PartitionWindows,
    WindowConfig,
)

W = 60_000
T0 = 1_764_230_400_000


def windows(shifts: list[float], n: int = 2000, seed: int = 0) -> list[list[FeatureWindowRow]]:
    """One list of rows per window; window i's x ~ N(shift_i, 1), c shifts with x."""
    rng = np.random.default_rng(seed)
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0))
    out = []
    for i, shift in enumerate(shifts):
        times = (T0 + i * W + np.sort(rng.integers(0, W, n))).tolist()
        x = rng.normal(shift, 1.0, n)
        c = np.where(rng.random(n) < 0.5 + 0.2 * min(shift, 1.0), "a", "b").tolist()
        block = EventBlock("prediction", "m", "v1", times, features={"x": x.tolist(), "c": c},
                           feature_kinds={"x": "numeric", "c": "categorical"})
        state.settle_kinds(block)
        state.apply([(i, block)])
        state.apply([(i, EventBlock("watermark", "m", "", [T0 + (i + 1) * W]))])
        out.append(state.close_ready())
    return out


def run(monitor: Monitor, rows: list[list[FeatureWindowRow]]) -> list[tuple[int, str, str, str]]:
    events = []
    for i, window in enumerate(rows):
        result = monitor.observe(window)
        events += [(i, a.state, a.feature, a.metric) for a in result.alerts]
    return events


def test_a_shift_opens_one_incident_per_feature_metric_and_resolves_after_it_ends() -> None:
    shifts = [0.0] * 8 + [1.0] * 4 + [0.0] * 6
    monitor = Monitor(MonitorConfig(baseline_windows=5), RulesConfig.default())
    events = run(monitor, windows(shifts))
    opened = [f for _, s, f, _ in events if s == "open"]
    resolved = [f for _, s, f, _ in events if s == "resolved"]
    # Detectors on the window means take part, folded into the feature's incident.
    # One incident per shifted feature, whichever of its metrics crossed first.
    assert sorted(opened) == sorted(resolved) == ["c", "x"]
    assert all(i >= 8 for i, *_ in events)  # nothing during the stationary start
    assert min(i for i, s, *_ in events if s == "open") <= 9  # within 2 shifted windows


def test_a_stationary_stream_raises_nothing() -> None:
    monitor = Monitor(MonitorConfig(baseline_windows=5), RulesConfig.default())
    assert run(monitor, windows([0.0] * 20, seed=3)) == []


def test_a_stationary_long_tailed_categorical_raises_nothing() -> None:
    """~50 categories with a Zipf tail: a fifth of the values fall outside the baseline's
    top 20, but they were seen, so unseen_share stays 0 and nothing opens."""
    rng = np.random.default_rng(5)
    weights = 1.0 / np.arange(1, 51)
    names = [f"k{i:02d}" for i in range(50)]
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0))
    monitor = Monitor(MonitorConfig(baseline_windows=5), RulesConfig.default())
    events, unseen = [], []
    for i in range(20):
        times = (T0 + i * W + np.sort(rng.integers(0, W, 2000))).tolist()
        tail = rng.choice(names, 2000, p=weights / weights.sum()).tolist()
        block = EventBlock("prediction", "m", "v1", times, features={"tail": tail},
                           feature_kinds={"tail": "categorical"})
        state.settle_kinds(block)
        state.apply([(i, block)])
        state.apply([(i, EventBlock("watermark", "m", "", [T0 + (i + 1) * W]))])
        result = monitor.observe(state.close_ready())
        events += [(a.state, a.metric) for a in result.alerts]
        unseen += [s.value for s in result.scores if s.metric == "unseen_share"]
    assert events == []
    assert len(unseen) == 15 and max(unseen) == 0.0


def test_a_class_share_moving_on_the_output_opens_an_incident_where_psi_would_not() -> None:
    """Positive rate 0.68 -> 0.755 in 1,000-event windows: chi2 is significant, PSI is only
    0.028, under the usual effect floor; the model's output takes the share's own change
    as the effect. The same shift on an input feature keeps the PSI floor."""
    rng = np.random.default_rng(11)
    reference = build_profile("m", "v1", {
        name: np.where(rng.random(20_000) < 0.68, "1", "0") for name in (PREDICTION, "x")},
        created_at_ms=T0)
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0))
    monitor = Monitor(MonitorConfig(), RulesConfig.default(), lambda m, v: reference)
    opened = []
    for i in range(12):
        rate = 0.68 if i < 6 else 0.755
        times = (T0 + i * W + np.sort(rng.integers(0, W, 1000))).tolist()
        columns = {name: np.where(rng.random(1000) < rate, "1", "0").tolist()
                   for name in (PREDICTION, "x")}
        block = EventBlock("prediction", "m", "v1", times, features=columns,
                           feature_kinds=dict.fromkeys(columns, "categorical"))
        state.settle_kinds(block)
        state.apply([(i, block)])
        state.apply([(i, EventBlock("watermark", "m", "", [T0 + (i + 1) * W]))])
        result = monitor.observe(state.close_ready())
        opened += [(i, a.feature, a.metric) for a in result.alerts if a.state == "open"]
    assert [feature for _, feature, _ in opened] == [PREDICTION]
    assert opened[0][0] in (7, 8)  # two shifted windows in a row open it


def test_scores_are_written_for_every_feature_and_metric_once_the_baseline_exists() -> None:
    monitor = Monitor(MonitorConfig(baseline_windows=3), RulesConfig.default())
    rows = windows([0.0] * 5)
    results = [monitor.observe(w) for w in rows]
    assert [len(r.baselines) for r in results] == [0, 0, 1, 0, 0]
    assert results[2].scores == []  # the baseline itself is not scored against itself
    metrics = {(s.feature, s.metric) for s in results[3].scores}
    numeric = ("psi", "js", "wasserstein", "wasserstein_std", "ks", "adwin", "page_hinkley")
    assert metrics == {("x", m) for m in numeric} | {
        ("c", m) for m in ("psi", "js", "chi2", "unseen_share", "share_change")}
    assert {s.verdict for s in results[3].scores} <= {"ok", "not_evaluated"}


@pytest.mark.parametrize("mode", ["fixed", "rolling"])
def test_checkpoint_mid_stream_changes_nothing(mode: str) -> None:
    rows = windows([0.0] * 6 + [1.5] * 4 + [0.0] * 5, seed=5)
    config = MonitorConfig(baseline_windows=4, baseline_mode=mode)  # type: ignore[arg-type]
    straight = Monitor(config, RulesConfig.default())
    expected = [straight.observe(w) for w in rows]
    resumed = Monitor(config, RulesConfig.default())
    got = [resumed.observe(w) for w in rows[:7]]
    again = Monitor.from_bytes(resumed.to_bytes(), config, RulesConfig.default())
    got += [again.observe(w) for w in rows[7:]]
    assert [r.alerts for r in got] == [r.alerts for r in expected]
    assert [[(s.feature, s.metric, round(s.value, 12)) for s in r.scores] for r in got] == [
        [(s.feature, s.metric, round(s.value, 12)) for s in r.scores] for r in expected]


def test_a_checkpoint_names_the_live_reference_and_keeps_recent_windows() -> None:
    """The training reference is read again from its topic, not stored in the record;
    if it changed meanwhile the restored monitor forgets it. Recent windows (for the
    baseline) come back equal."""
    rows = windows([0.0] * 3, seed=3)
    reference = dataclasses.replace(baseline_profile("m", "v1", rows), source="training")
    config = MonitorConfig(baseline_windows=5)
    monitor = Monitor(config, RulesConfig.default(), lambda m, v: reference)
    for window in rows:
        monitor.observe(window)
    record = monitor.to_bytes()
    assert monitor._versions[("m", "v1")].current is reference
    again = Monitor.from_bytes(record, config, RulesConfig.default(), lambda m, v: reference)
    assert again._versions[("m", "v1")].current is reference
    assert repr(list(again._versions[("m", "v1")].recent)) == repr(rows)  # NaN == NaN
    changed = dataclasses.replace(reference, created_at_ms=1)
    moved_on = Monitor.from_bytes(record, config, RulesConfig.default(), lambda m, v: changed)
    assert moved_on._versions[("m", "v1")].current is None


def test_a_detector_on_the_score_stream_opens_an_incident_on_its_first_hit() -> None:
    rng = np.random.default_rng(2)
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0))
    monitor = Monitor(MonitorConfig(window_ms=W, baseline_windows=3), RulesConfig.default())
    events: list[tuple[int, str, str]] = []
    hits: list[tuple[int, str]] = []
    for i in range(10):
        n = 1000
        scores = rng.beta(2, 5, n) if i < 6 else rng.beta(5, 2, n)  # the model turns
        times = (T0 + i * W + np.sort(rng.integers(0, W, n))).tolist()
        block = EventBlock("prediction", "m", "v1", times,
                           features={"output.score": scores.tolist()},
                           feature_kinds={"output.score": "numeric"}, score=scores.tolist())
        state.settle_kinds(block)
        monitor.observe_block(block)
        state.apply([(i, block)])
        state.apply([(i, EventBlock("watermark", "m", "", [T0 + (i + 1) * W]))])
        result = monitor.observe(state.close_ready())
        events += [(i, a.state, a.feature) for a in result.alerts]
        hits += [(i, s.metric) for s in result.scores
                 if s.metric in ("adwin", "page_hinkley") and s.value]
    # The detectors fire in the first turned window, and that opens the feature's one
    # incident at once instead of after the two bad windows the other metrics need.
    assert hits and min(i for i, _ in hits) == 6
    assert [(i, f) for i, s, f in events if s == "open"] == [(6, "output.score")]


def test_detectors_and_their_streams_follow_the_configuration() -> None:
    rows = windows([0.0] * 6, seed=9)
    none = Monitor(MonitorConfig(baseline_windows=3, detectors=()), RulesConfig.default())
    kswin = Monitor(MonitorConfig(baseline_windows=3, detectors=("kswin",)),
                    RulesConfig.default())
    metrics = [{s.metric for w in rows for s in m.observe(w).scores} for m in (none, kswin)]
    assert not metrics[0] & {"adwin", "page_hinkley", "kswin"}
    assert metrics[1] & {"adwin", "page_hinkley", "kswin"} == {"kswin"}


def low_volume(shifts: list[float], n: int, seed: int) -> list[list[FeatureWindowRow]]:
    """Windows of ``n`` events of x ~ N(shift, 1), binned on a training reference."""
    rng = np.random.default_rng(seed)
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                             lambda m, v: LOW_REFERENCE)
    out = []
    for i, shift in enumerate(shifts):
        times = (T0 + i * W + np.sort(rng.integers(0, W, n))).tolist()
        block = EventBlock("prediction", "m", "v1", times,
                           features={"x": rng.normal(shift, 1.0, n).tolist()},
                           feature_kinds={"x": "numeric"})
        state.settle_kinds(block)
        state.apply([(2 * i, block), (2 * i + 1, EventBlock("watermark", "m", "",
                                                            [T0 + (i + 1) * W]))])
        out.append(state.close_ready())
    return out


LOW_REFERENCE = build_profile("m", "v1", {"x": np.random.default_rng(0).normal(0, 1, 20_000)},
                              created_at_ms=T0)


def test_a_quiet_version_is_judged_on_merged_windows_and_says_which_span() -> None:
    """200 events a window never reach min_count (500) alone; three windows merged do."""
    monitor = Monitor(MonitorConfig(), RulesConfig.default(), lambda m, v: LOW_REFERENCE)
    shifts = [0.0] * 12 + [1.0] * 12
    opened, judged = [], []
    for i, window in enumerate(low_volume(shifts, 200, seed=4)):
        result = monitor.observe(window)
        opened += [(i, a) for a in result.alerts if a.state == "open"]
        judged += [(i, s) for s in result.scores if s.metric == "psi"
                   and s.verdict != "not_evaluated"]
    # Judged every third window, on the two windows before it and itself.
    assert [i for i, _ in judged] == list(range(2, 24, 3))
    assert all(s.span_start == s.window_start - 2 * W for _, s in judged)
    (at, alert), = opened
    assert at in (17, 20)  # the second bad span after the shift at window 12
    assert alert.feature == "x" and "on 3 windows merged from" in alert.summary


def test_a_quiet_stationary_version_raises_nothing() -> None:
    monitor = Monitor(MonitorConfig(), RulesConfig.default(), lambda m, v: LOW_REFERENCE)
    alerts = [a for w in low_volume([0.0] * 60, 150, seed=9)
              for a in monitor.observe(w).alerts]
    assert alerts == []


def test_merged_windows_score_as_one_window_of_all_their_events() -> None:
    """Spans: three windows merged give the scores of the same events in one window."""
    rng = np.random.default_rng(12)
    values = rng.normal(0.3, 1.2, 600)
    split = low_volume_from(values, [200, 200, 200])
    whole = low_volume_from(values, [600])
    spans = Spans()
    rows: list[FeatureWindowRow] = []
    for window in split:
        rows, _ = spans.judged_rows(window, lambda feature: 500)
    merged, one = rows[0], whole[0][0]
    for name in ("count", "missing_count", "min", "max", "bin_counts", "fine_bin_counts"):
        assert getattr(merged, name) == getattr(one, name), name
    assert merged.mean == pytest.approx(one.mean) and merged.variance == pytest.approx(
        one.variance)
    assert (merged.window_start, merged.window_end) == (one.window_start, T0 + 3 * W)


def low_volume_from(values: np.ndarray, sizes: list[int]) -> list[list[FeatureWindowRow]]:
    state = PartitionWindows(WindowConfig(window_ms=W, allowed_lateness_ms=0),
                             lambda m, v: LOW_REFERENCE)
    out, at = [], 0
    for i, n in enumerate(sizes):
        times = [T0 + i * W + k for k in range(n)]
        block = EventBlock("prediction", "m", "v1", times,
                           features={"x": values[at:at + n].tolist()},
                           feature_kinds={"x": "numeric"})
        at += n
        state.settle_kinds(block)
        state.apply([(2 * i, block), (2 * i + 1, EventBlock("watermark", "m", "",
                                                            [T0 + (i + 1) * W]))])
        out.append(state.close_ready())
    return out
