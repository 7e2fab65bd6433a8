"""Judging windows' model quality once their labels are due (models/quality/monitor.py):
when a window is due, the baseline and its accuracy_drop / mae_ratio rules, the detectors
(which open no incident at once, ADWIN on the loss counting only when quality is worse than
the baseline), the coverage rule, replays, and checkpoints. Windows are summarised from
synthetic labelled predictions with driftline.models.quality.performance_window.summarize, as the
worker does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
import pytest

from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.detectors import DetectorBank, DetectorSpec
from driftline.models.quality.monitor import (
    ERROR_DETECTORS,
    LOSS_DETECTORS,
    MAX_DETECTOR_VALUES,
    DueWindow,
    PerformanceConfig,
    PerformanceMonitor,
)
from driftline.models.quality.performance_window import PairColumns, WindowPerformance, summarize
from driftline.models.windows.feature_windows import FeatureWindowRow

W = 60_000
T0 = 1_764_230_400_000
HOUR = 3_600_000
N = 1_000  # labelled predictions per window
CLASSES = np.array(["a", "b", "c"])
QUALITY_KEY = "performance:m:1:quality"
#: The default rules without the two detectors that alert by default (HDDM_A, ADWIN on the
#: loss), to see the threshold rules alone.
NO_DETECTORS = RulesConfig.from_toml(
    "[metrics.hddm_a]\nenabled = false\n[metrics.adwin_loss]\nenabled = false\n")
Event = tuple[int, str, str, str, str]  # window index, state, severity, dedup key, metric


def only_adwin(drop_min_count: int | None = None,
               adwin_min_count: int | None = None) -> RulesConfig:
    """Rules in which ADWIN on the loss alone judges quality, and one bad window opens an
    incident (open_after = 1): its counted hits show as alerts."""
    toml = "[incidents]\nopen_after = 1\n[metrics.accuracy_drop]\nenabled = false\n"
    if drop_min_count is not None:  # the baseline's windows need this many labels
        toml += f"min_count = {drop_min_count}\n"
    toml += "[metrics.mae_ratio]\nenabled = false\n[metrics.hddm_a]\nenabled = false\n"
    if adwin_min_count is not None:
        toml += f"[metrics.adwin_loss]\nmin_count = {adwin_min_count}\n"
    return RulesConfig.from_toml(toml)


def closed_row(start: int, count: int, model: str = "m", version: str = "1",
               feature: str = "x") -> FeatureWindowRow:
    """A closed feature window: the monitor reads only its model, version, start and count."""
    return FeatureWindowRow(model, version, feature, "numeric", start, start + W, count, 0,
                            0.0, 1.0, -1.0, 1.0, (), (), (), (), (), 0)


def start_of(i: int) -> int:
    return T0 + i * W


def due_window(i: int, n_predicted: int = N, model: str = "m",
               version: str = "1") -> DueWindow:
    return DueWindow(model, version, start_of(i), start_of(i) + W, n_predicted)


def classification_window(rng: np.random.Generator, accuracy: float, i: int,
                          n: int = N) -> WindowPerformance:
    """Window ``i`` of a three-class model right with probability ``accuracy``."""
    y = rng.integers(0, 3, n)
    wrong = rng.random(n) >= accuracy
    predicted = np.where(wrong, (y + rng.integers(1, 3, n)) % 3, y)
    times = start_of(i) + np.sort(rng.integers(0, W, n))
    delays = rng.exponential(600.0, n)
    return summarize(PairColumns.from_rows([
        (int(t), str(CLASSES[p]), str(CLASSES[c]), None, {}, float(d))
        for t, p, c, d in zip(times, predicted, y, delays, strict=True)]))


def classification_run(accuracies: Sequence[float], seed: int) -> list[WindowPerformance]:
    rng = np.random.default_rng(seed)
    return [classification_window(rng, a, i) for i, a in enumerate(accuracies)]


def regression_run(noise: Sequence[float], seed: int) -> list[WindowPerformance]:
    """Windows of a regressor with errors ~ N(0, noise_i): MAE proportional to noise_i."""
    rng = np.random.default_rng(seed)
    out = []
    for i, sigma in enumerate(noise):
        y = rng.normal(100.0, 20.0, N)
        predicted = y + rng.normal(0.0, sigma, N)
        times = start_of(i) + np.sort(rng.integers(0, W, N))
        out.append(summarize(PairColumns.from_rows([
            (int(t), repr(float(p)), repr(float(v)), None, {}, 60.0)
            for t, p, v in zip(times, predicted, y, strict=True)])))
    return out


def judge(monitor: PerformanceMonitor, perfs: Sequence[WindowPerformance], first: int = 0,
          n_predicted: int = N) -> list[Event]:
    """Judge window ``first + k`` with ``perfs[k]``; every alert as an :data:`Event`."""
    return [(i, a.state, a.severity, a.dedup_key, a.metric)
            for i, perf in enumerate(perfs, first)
            for a in monitor.judge(due_window(i, n_predicted), perf)]


def monitor(rules: RulesConfig | None = None, **config: object) -> PerformanceMonitor:
    return PerformanceMonitor(PerformanceConfig(**config),  # type: ignore[arg-type]
                              rules or RulesConfig.default())


def round_trip(state: object) -> object:
    return orjson.loads(orjson.dumps(state))


def raw_hits(perfs: Sequence[WindowPerformance], specs: Sequence[DetectorSpec] = LOSS_DETECTORS,
             stream: str = "losses") -> list[tuple[int, list[str]]]:
    """The windows in which fresh detectors fed the windows' streams fire, as the monitor
    feeds them, whether or not the monitor counts the hit."""
    bank = DetectorBank(tuple(specs), MAX_DETECTOR_VALUES)
    out: list[tuple[int, list[str]]] = []
    for i, perf in enumerate(perfs):
        if hits := bank.update(stream, getattr(perf, stream)):
            out.append((i, sorted({str(hit.detector) for hit in hits})))
    return out


# --- when a window is due ------------------------------------------------------------------


def test_a_window_is_due_once_predictions_and_labels_pass_its_end_by_judge_after() -> None:
    m = monitor()
    m.observe_closed([closed_row(T0, 1_000)])
    ready = T0 + W + HOUR
    m.advance_label_clock({"m": ready})
    assert m.due({"m": ready - 1}) == []
    assert m.due({"m": ready}) == [DueWindow("m", "1", T0, T0 + W, 1_000)]
    assert m.due({"m": ready + 10 * HOUR}) == [DueWindow("m", "1", T0, T0 + W, 1_000)]
    assert m.due({"other": ready + 10 * HOUR}) == []  # another model's clock


def test_a_window_waits_for_its_labels_unless_they_stalled() -> None:
    m = monitor()
    m.observe_closed([closed_row(T0, 1_000)])
    ready = T0 + W + HOUR
    assert m.due({"m": ready}) == []  # no label read yet
    assert m.due({"m": ready}, stalled={"m"}) == [DueWindow("m", "1", T0, T0 + W, 1_000)]
    m.advance_label_clock({"m": ready - 1})
    assert m.due({"m": ready + HOUR}) == []  # the labels lag
    m.advance_label_clock({"m": ready})
    m.advance_label_clock({"m": T0})  # the clock never goes back
    assert m.label_clock == {"m": ready}
    assert len(m.due({"m": ready + HOUR})) == 1


def test_judge_after_is_per_model() -> None:
    m = monitor(judge_after_ms=lambda model: 0 if model == "fast" else HOUR)
    m.observe_closed([closed_row(T0, 10, model="fast"), closed_row(T0, 20, model="slow")])
    now = {"fast": T0 + W, "slow": T0 + W}
    m.advance_label_clock(now)
    assert m.due(now) == [DueWindow("fast", "1", T0, T0 + W, 10)]
    later = {"fast": T0 + W + HOUR, "slow": T0 + W + HOUR}
    m.advance_label_clock(later)
    assert [w.model for w in m.due(later)] == ["fast", "slow"]


def test_due_windows_keep_each_windows_largest_count_in_window_order() -> None:
    m = monitor()
    m.observe_closed([closed_row(start_of(1), 900, feature="x"),
                      closed_row(start_of(0), 500, feature="x"),
                      closed_row(start_of(0), 700, feature="y"),
                      closed_row(start_of(0), 300, version="2")])
    now = start_of(2) + HOUR
    m.advance_label_clock({"m": now})
    assert m.due({"m": now}) == [DueWindow("m", "1", start_of(0), start_of(1), 700),
                                 DueWindow("m", "1", start_of(1), start_of(2), 900),
                                 DueWindow("m", "2", start_of(0), start_of(1), 300)]


def test_a_judged_window_is_no_longer_due_nor_remembered_again() -> None:
    m = monitor()
    m.observe_closed([closed_row(start_of(0), N), closed_row(start_of(1), N)])
    now = start_of(5) + HOUR
    m.advance_label_clock({"m": now})
    first, second = m.due({"m": now})
    m.judge(first, classification_run([0.9], seed=0)[0])
    assert m.due({"m": now}) == [second]
    m.observe_closed([closed_row(start_of(0), 2 * N)])  # e.g. a replayed close
    assert m.due({"m": now}) == [second]


def test_a_disabled_monitor_remembers_no_window() -> None:
    m = monitor(enabled=False)
    m.observe_closed([closed_row(T0, 1_000)])
    m.advance_label_clock({"m": T0 + 100 * HOUR})
    assert m.label_clock == {}  # the label clock is not advanced either
    assert m.due({"m": T0 + 100 * HOUR}, stalled={"m"}) == []
    assert m.to_state()["versions"] == m.to_state()["label_clock"] == []


# --- judging quality -----------------------------------------------------------------------


DROP = [0.9] * 10 + [0.7] * 5 + [0.9] * 10


def test_an_accuracy_drop_opens_after_open_after_bad_windows_though_detectors_fire() -> None:
    perfs = classification_run(DROP, seed=1)
    # The premise: in window 10 (the first at 70 %) DDM, EDDM and HDDM_A fire on the errors
    # and ADWIN on the loss; ADWIN fires again on the recovery in window 15.
    assert raw_hits(perfs, ERROR_DETECTORS, "errors") == [
        (0, ["ddm", "eddm"]), (6, ["eddm"]), (8, ["eddm"]), (10, ["ddm", "eddm", "hddm_a"]),
        (11, ["eddm"])]
    assert raw_hits(perfs) == [(10, ["adwin"]), (15, ["adwin"])]
    m = monitor(baseline_windows=5)
    events = judge(m, perfs[:11])
    assert (events, m.incidents.phases) == ([], {QUALITY_KEY: "pending"})
    events += judge(m, perfs[11:], first=11)
    # The hits in window 10 open nothing at once: open_after = 2 bad windows (10, 11). The
    # ADWIN hit on the recovery (15, accuracy above the baseline's) is no bad sign, so
    # resolve_after = 3 good windows end at 17: as without detectors.
    assert events == [(11, "open", "critical", QUALITY_KEY, "accuracy_drop"),
                      (17, "resolved", "critical", QUALITY_KEY, "accuracy_drop")]
    assert judge(monitor(NO_DETECTORS, baseline_windows=5), perfs) == events


def test_without_detectors_an_accuracy_drop_opens_after_open_after_bad_windows() -> None:
    events = judge(monitor(NO_DETECTORS, baseline_windows=5), classification_run(DROP, seed=1))
    # open_after = 2 bad windows (10, 11); resolve_after = 3 good ones (15, 16, 17).
    assert events == [(11, "open", "critical", QUALITY_KEY, "accuracy_drop"),
                      (17, "resolved", "critical", QUALITY_KEY, "accuracy_drop")]


def test_a_one_window_dip_opens_nothing_though_detectors_fire_in_it() -> None:
    perfs = classification_run([0.9] * 10 + [0.7] + [0.9] * 10, seed=1)
    assert (10, ["ddm", "eddm", "hddm_a"]) in raw_hits(perfs, ERROR_DETECTORS, "errors")
    assert raw_hits(perfs) == [(10, ["adwin"]), (11, ["adwin"])]
    # Window 10 is bad (accuracy_drop, HDDM_A, ADWIN), but one bad window is not two; the
    # ADWIN hit in window 11 is on the recovery.
    assert judge(monitor(baseline_windows=5), perfs) == []


def test_detector_hits_alone_need_open_after_bad_windows() -> None:
    perfs = classification_run(DROP, seed=1)
    no_drop_rule = "[metrics.accuracy_drop]\nenabled = false\n"
    # HDDM_A and ADWIN fire in window 10 only: one bad window opens nothing ...
    assert judge(monitor(RulesConfig.from_toml(no_drop_rule), baseline_windows=5), perfs) == []
    # ... though it is a bad window, as one with open_after = 1 shows.
    one = RulesConfig.from_toml("[incidents]\nopen_after = 1\n" + no_drop_rule)
    assert judge(monitor(one, baseline_windows=5), perfs) == [
        (10, "open", "warning", QUALITY_KEY, "adwin_loss"),
        (13, "resolved", "warning", QUALITY_KEY, "adwin_loss")]


def test_the_open_alert_describes_the_drop() -> None:
    m = monitor(baseline_windows=5)
    perfs = classification_run(DROP[:12], seed=1)
    judge(m, perfs[:10])
    assert m.judge(due_window(10), perfs[10]) == []  # the first bad window
    (alert,) = m.judge(due_window(11), perfs[11])
    baseline = sum(p.correct_count for p in perfs[:5]) / (5 * N)
    assert (alert.state, alert.feature, alert.metric, alert.threshold) == (
        "open", "quality", "accuracy_drop", 0.1)
    assert alert.value == pytest.approx(baseline - perfs[11].correct_count / N)
    assert alert.value == pytest.approx(0.2, abs=0.04)
    assert (alert.window_start, alert.first_seen) == (start_of(11), start_of(10))
    assert m.incidents.phases == {QUALITY_KEY: "open"}


def test_a_stationary_run_raises_nothing() -> None:
    assert judge(monitor(baseline_windows=5), classification_run([0.9] * 40, seed=0)) == []


def test_windows_with_too_few_labels_are_not_the_baseline() -> None:
    # Five windows of 400 labels (< min_count 500) at 100 %, then 90 % with 1,000 labels:
    # had the small windows been the baseline, 90 % would be a drop of 0.1 (critical).
    rng = np.random.default_rng(5)
    small = [classification_window(rng, 1.0, i, n=400) for i in range(5)]
    rest = [classification_window(rng, 0.9, i) for i in range(5, 20)]
    assert judge(monitor(NO_DETECTORS, baseline_windows=5), small + rest) == []


def test_a_drop_within_the_baseline_windows_is_not_judged_against_itself() -> None:
    # The first five judged windows are the baseline: a drop there lowers the baseline.
    events = judge(monitor(NO_DETECTORS, baseline_windows=5),
                   classification_run([0.9, 0.9, 0.9, 0.7, 0.7] + [0.9] * 10, seed=2))
    assert events == []


def test_a_coverage_rule_opens_a_labels_incident() -> None:
    rules = RulesConfig.from_toml("[metrics.coverage]\nwarn = 0.5")
    perfs = classification_run([0.9] * 8, seed=3)
    m = monitor(rules)
    # 1,000 labels of 5,000 predictions: coverage 0.2 ≤ 0.5. Windows 0 and 1 are before
    # min_windows (3); 2 and 3 are the two bad windows open_after asks for.
    events = judge(m, perfs, n_predicted=5 * N)
    assert events == [(3, "open", "warning", "performance:m:1:labels", "coverage")]
    assert judge(monitor(), perfs, n_predicted=5 * N) == []  # off by default


def test_coverage_is_not_judged_on_too_few_predictions() -> None:
    rules = RulesConfig.from_toml("[metrics.coverage]\nwarn = 0.5")
    perfs = [classification_window(np.random.default_rng(4), 0.9, i, n=80) for i in range(8)]
    assert judge(monitor(rules), perfs, n_predicted=400) == []  # 400 < min_count 500


def test_a_regressors_mae_doubling_opens_a_mae_ratio_incident() -> None:
    perfs = regression_run([1.0] * 8 + [2.0] * 4 + [1.0] * 8, seed=2)
    assert perfs[0].task == "regression"
    # ADWIN on the absolute errors fires when the MAE doubles (8) and when it falls (12).
    assert raw_hits(perfs) == [(8, ["adwin"]), (12, ["adwin"])]
    events = judge(monitor(baseline_windows=5), perfs)
    # Open after two bad windows (8: ADWIN and mae_ratio ≈ 2 ≥ 1.5; 9), not at once. The
    # ADWIN hit on the fall (12, MAE below the baseline's) is no bad sign: resolved after
    # three good windows (12, 13, 14); all good, the finding reported is the baseline
    # comparison, the most readable one.
    assert events == [(9, "open", "critical", QUALITY_KEY, "mae_ratio"),
                      (14, "resolved", "critical", QUALITY_KEY, "mae_ratio")]
    assert judge(monitor(NO_DETECTORS, baseline_windows=5), perfs) == [
        (9, "open", "critical", QUALITY_KEY, "mae_ratio"),
        (14, "resolved", "critical", QUALITY_KEY, "mae_ratio")]


def test_the_mae_ratio_is_against_the_baseline_mae() -> None:
    perfs = regression_run([1.0] * 5 + [2.0] * 2, seed=6)
    m = monitor(NO_DETECTORS, baseline_windows=5)
    judge(m, perfs[:6])
    (alert,) = m.judge(due_window(6), perfs[6])
    baseline = sum(p.metrics["mae"] for p in perfs[:5]) / 5  # type: ignore[misc]
    assert alert.metric == "mae_ratio"
    assert alert.value == pytest.approx(perfs[6].metrics["mae"] / baseline)  # type: ignore[operator]
    assert alert.value == pytest.approx(2.0, rel=0.1)


def test_an_accuracy_improvement_opens_no_incident() -> None:
    perfs = classification_run([0.7] * 10 + [0.9] * 10, seed=1)
    assert raw_hits(perfs) == [(10, ["adwin"])]  # ADWIN is two-sided: it fires on the rise
    assert judge(monitor(baseline_windows=5), perfs) == []
    # Not even where one counted hit would open an incident: 90 % is above the baseline's.
    assert judge(monitor(only_adwin(), baseline_windows=5), perfs) == []


def test_adwin_on_the_loss_counts_only_when_quality_is_worse_than_the_baseline() -> None:
    drop = classification_run(DROP, seed=1)
    # Counted in window 10 (70 % < the baseline's 90 %), not in 15 (back to 90 %): the
    # incident resolves at 13 and stays so through 15 (a bad window while it cools down
    # would reopen it).
    assert judge(monitor(only_adwin(), baseline_windows=5), drop) == [
        (10, "open", "warning", QUALITY_KEY, "adwin_loss"),
        (13, "resolved", "warning", QUALITY_KEY, "adwin_loss")]
    # A regressor: counted when the MAE doubles (8), not when it falls back (12).
    mae = regression_run([1.0] * 8 + [2.0] * 4 + [1.0] * 8, seed=2)
    assert judge(monitor(only_adwin(), baseline_windows=5), mae) == [
        (8, "open", "warning", QUALITY_KEY, "adwin_loss"),
        (11, "resolved", "warning", QUALITY_KEY, "adwin_loss")]


def test_adwin_on_the_loss_never_counts_without_a_baseline() -> None:
    # Windows of 400 labels (< the baseline's min_count 500): no baseline is ever formed.
    # ADWIN, judged on any count here, fires on the fall from 90 % to 50 % in window 10.
    rng = np.random.default_rng(7)
    perfs = [classification_window(rng, a, i, n=400)
             for i, a in enumerate([0.9] * 10 + [0.5] * 10)]
    assert raw_hits(perfs) == [(10, ["adwin"])]
    assert judge(monitor(only_adwin(adwin_min_count=0), baseline_windows=5), perfs) == []
    # With the same windows as the baseline, the same hit counts.
    assert judge(monitor(only_adwin(drop_min_count=0, adwin_min_count=0),
                         baseline_windows=5), perfs) == [
        (10, "open", "warning", QUALITY_KEY, "adwin_loss"),
        (13, "resolved", "warning", QUALITY_KEY, "adwin_loss")]


# --- replays and checkpoints ---------------------------------------------------------------


def test_judging_a_window_again_changes_nothing() -> None:
    perfs = classification_run(DROP[:12], seed=1)
    m = monitor(baseline_windows=5)
    judge(m, perfs[:11])
    assert m.judge(due_window(11), perfs[11]) != []  # the incident opens
    state = orjson.dumps(m.to_state())
    assert m.judge(due_window(11), perfs[11]) == []
    assert m.judge(due_window(10), perfs[10]) == []  # an earlier window, too
    assert m.judge(due_window(3), perfs[3]) == []
    assert orjson.dumps(m.to_state()) == state


@pytest.mark.parametrize("stop", [3, 9, 10, 11, 12, 15, 16])
def test_a_checkpoint_mid_run_changes_no_alert(stop: int) -> None:
    """Restored from its JSON state (incidents, baselines and detectors), a monitor raises
    exactly what one that never stopped does."""
    perfs = classification_run(DROP, seed=1)
    steady, first = monitor(baseline_windows=5), monitor(baseline_windows=5)
    for m in (steady, first):  # windows waiting to be judged are in the state too
        m.observe_closed([closed_row(start_of(i), N) for i in range(stop, stop + 3)])
        m.advance_label_clock({"m": start_of(stop) + HOUR})
    expected = judge(steady, perfs)
    events = judge(first, perfs[:stop])
    state = round_trip(first.to_state())
    second = monitor(baseline_windows=5)
    second.load_state(state)  # type: ignore[arg-type]
    now = {"m": start_of(stop + 5) + HOUR}
    assert second.due(now) == first.due(now)
    events += judge(second, perfs[stop:], first=stop)
    assert events == expected
    assert [(e[0], e[1]) for e in expected] == [(11, "open"), (17, "resolved")]
    # The rest of the state too (pickled detectors need not be the same bytes).
    assert round_trip({**second.to_state(), "detectors": None}) == round_trip(
        {**steady.to_state(), "detectors": None})


def test_a_checkpoint_carries_the_detectors() -> None:
    # Restored after window 9 (the last at 90 %), with ADWIN alone judging quality: the
    # carried ADWIN has seen the 90 % windows and fires on the fall in window 10, opening
    # an incident (open_after = 1). Detectors started afresh see only the 70 % windows from
    # there, and fire only on the recovery in window 15, which does not count: nothing.
    perfs = classification_run(DROP, seed=1)
    rules = only_adwin()
    m = monitor(rules, baseline_windows=5)
    judge(m, perfs[:10])
    state = round_trip(m.to_state())
    assert [row[:2] for row in state["detectors"]] == [["m", "1"]]  # type: ignore[index]
    carried, forgotten = monitor(rules, baseline_windows=5), monitor(rules, baseline_windows=5)
    carried.load_state(state)  # type: ignore[arg-type]
    forgotten.load_state({**state, "detectors": []})  # type: ignore[dict-item]
    assert raw_hits(perfs[10:]) == [(5, ["adwin"])]  # window 15
    assert judge(carried, perfs[10:], first=10) == [
        (10, "open", "warning", QUALITY_KEY, "adwin_loss"),
        (13, "resolved", "warning", QUALITY_KEY, "adwin_loss")]
    assert judge(forgotten, perfs[10:], first=10) == []
