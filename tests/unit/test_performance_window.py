"""One window's quality from its labelled predictions (models/quality/performance_window.py),
checked against plain numpy versions of the scikit-learn formulas: classification counts and
metrics, bare scores and their positive class, probability maps, regression errors, label delays,
and that a window's result depends on its rows, not on the order they were read in."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models.quality.performance import LOG_LOSS_CLIP, MAX_ABS_VALUE, DelayHistogram
from driftline.models.quality.performance_window import (
    MAX_CLASSES,
    MAX_CLASSES_AS_NUMBERS,
    MAX_ROW_LOSS,
    OTHER,
    PairColumns,
    WindowPerformance,
    infer_task,
    summarize,
)

FAST = settings(max_examples=60, deadline=None)
Row = tuple[int, str | None, str, float | None, Mapping[str, float], float]
FIXED_POINT = 2.0**-25  # each fixed-point term is within this of its float value
SCORE_BINS = 50
CALIBRATION_BINS = 10
LETTERS = ("a", "b", "c", "d")
ANIMALS = ("cat", "dog", "eel")
EDGE_SCORES = (0.0, 1.0, 0.5, 0.02, 0.98, 0.1, 0.3)
DELAYS = st.one_of(st.floats(0.0, 4e6), st.sampled_from([0.0, 0.5, 1.0, 60.0, 3_600.0]))


def pairs(rows: Sequence[Row]) -> PairColumns:
    return PairColumns.from_rows(rows)


def in_time_order(rows: Sequence[Row]) -> list[Row]:
    """The order the module reads rows in: by prediction time, ties as given (stable)."""
    return sorted(rows, key=lambda row: row[0])


def ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def assert_close(actual: float | None, expected: float | None, abs_: float = 1e-12) -> None:
    assert (actual is None) == (expected is None), (actual, expected)
    if expected is not None:
        assert actual == pytest.approx(expected, rel=1e-12, abs=abs_)


def exact_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann–Whitney: P(score_pos > score_neg) + P(tie) / 2 over all pairs."""
    pos, neg = scores[positive], scores[~positive]
    if pos.size == 0 or neg.size == 0:
        return None
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def binned_auc_bound(scores: np.ndarray, positive: np.ndarray) -> float:
    """binned_auc's documented error: Σ_b pos_b·neg_b / (2·P·N) on 50 equal bins."""
    bins = np.minimum(np.floor(scores * SCORE_BINS), SCORE_BINS - 1).astype(int)
    pos = np.bincount(bins[positive], minlength=SCORE_BINS)
    neg = np.bincount(bins[~positive], minlength=SCORE_BINS)
    return float(np.sum(pos * neg) / (2 * pos.sum() * neg.sum()))


def assert_auc_within_bound(actual: float | None, scores: np.ndarray,
                            positive: np.ndarray) -> None:
    expected = exact_auc(scores, positive)
    assert (actual is None) == (expected is None), (actual, expected)
    if expected is not None:
        assert actual is not None
        assert abs(actual - expected) <= binned_auc_bound(scores, positive) + 1e-12


def comparable(perf: WindowPerformance) -> dict[str, Any]:
    """Every field of a result, arrays as lists (NaN as None) and the histogram as columns."""
    out = dataclasses.asdict(dataclasses.replace(perf, delay=DelayHistogram()))
    out["delay"] = perf.delay.to_columns()
    for name in ("errors", "losses"):
        out[name] = [None if math.isnan(v) else v for v in getattr(perf, name).tolist()]
    return out


# --- strategies ---------------------------------------------------------------------------


@st.composite
def labelled_rows(draw: st.DrawFn, classes: Sequence[str] = LETTERS, max_size: int = 80,
                  distinct_times: bool = False) -> list[Row]:
    """Classification rows without scores: some predictions missing, times out of order."""
    n = draw(st.integers(0, max_size))
    times = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n,
                          unique=distinct_times))
    labels = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    predictions = draw(st.lists(st.one_of(st.none(), st.sampled_from(classes)),
                                min_size=n, max_size=n))
    delays = draw(st.lists(DELAYS, min_size=n, max_size=n))
    return [(t, p, y, None, {}, d)
            for t, p, y, d in zip(times, predictions, labels, delays, strict=True)]


@st.composite
def scored_rows(draw: st.DrawFn, max_size: int = 80, distinct_times: bool = False) -> list[Row]:
    """Binary "0"/"1" rows with a bare score (some missing), both classes present."""
    base = draw(labelled_rows(("0", "1"), max_size, distinct_times))
    base += [(10**6 + 1, "1", "0", 0.5, {}, 1.0), (10**6 + 2, "0", "1", 0.5, {}, 1.0)]
    score = st.one_of(st.none(), st.floats(0.0, 1.0), st.sampled_from(EDGE_SCORES))
    scores = draw(st.lists(score, min_size=len(base), max_size=len(base)))
    return [(t, p, y, s, {}, d) for (t, p, y, _, _, d), s in zip(base, scores, strict=True)]


@st.composite
def probability_rows(draw: st.DrawFn, max_size: int = 60,
                     distinct_times: bool = False) -> list[Row]:
    """Three-class rows; most carry a probabilities map (not normalised), some none."""
    base = draw(labelled_rows(ANIMALS, max_size, distinct_times))
    probability = st.one_of(st.floats(0.0, 1.0), st.sampled_from(EDGE_SCORES))
    full = st.fixed_dictionaries({c: probability for c in ANIMALS})
    maps: st.SearchStrategy[dict[str, float]] = st.one_of(st.just({}), full)
    drawn = draw(st.lists(maps, min_size=len(base), max_size=len(base)))
    return [(t, p, y, None, m, d) for (t, p, y, _, _, d), m in zip(base, drawn, strict=True)]


@st.composite
def regression_rows(draw: st.DrawFn, distinct_times: bool = False) -> list[Row]:
    """More than 20 distinct numeric labels (some 0), predictions near them or missing."""
    ints = draw(st.lists(st.integers(-1_000, 1_000), min_size=MAX_CLASSES_AS_NUMBERS + 1,
                         max_size=60, unique=True))
    ints += [0] * draw(st.integers(0, 3))
    scale = draw(st.sampled_from([1.0, 0.001, 0.1, 1_000.0]))
    n = len(ints)
    times = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n,
                          unique=distinct_times))
    noise = draw(st.lists(st.one_of(st.none(), st.floats(-100.0, 100.0)), min_size=n,
                          max_size=n))
    delays = draw(st.lists(DELAYS, min_size=n, max_size=n))
    rows: list[Row] = []
    for t, k, e, d in zip(times, ints, noise, delays, strict=True):
        y = k * scale
        rows.append((t, None if e is None else repr(y + e * scale), repr(y), None, {}, d))
    return rows


# --- classification without scores ---------------------------------------------------------


def test_the_module_example() -> None:
    perf = summarize(pairs([(1_000, "fraud", "fraud", 0.9, {}, 30.0),
                            (2_000, "ok", "fraud", 0.2, {}, 60.0),
                            (3_000, "ok", "ok", 0.1, {}, 90.0),
                            (4_000, "fraud", "ok", 0.7, {}, 3_600.0)]))
    assert (perf.task, perf.positive_class, perf.metrics["accuracy"]) == (
        "classification", "fraud", 0.5)
    assert perf.confusion == {"fraud -> fraud": 1, "fraud -> ok": 1, "ok -> fraud": 1,
                              "ok -> ok": 1}


@FAST
@given(labelled_rows())
def test_counts_and_metrics_match_numpy(rows: list[Row]) -> None:
    perf = summarize(pairs(rows))
    ordered = in_time_order(rows)
    y = np.array([r[2] for r in ordered], dtype=object)
    p = np.array([r[1] for r in ordered], dtype=object)
    # A missing prediction is no class: the OTHER slot of the confusion matrix.
    shown = np.array([OTHER if v is None else v for v in p], dtype=object)
    classes = sorted({*y, *(v for v in p if v is not None)})
    assert perf.task == "classification"
    assert perf.n_labeled == len(rows)
    assert perf.correct_count == int(np.sum(y == p))
    assert_close(perf.metrics["accuracy"], ratio(np.sum(y == p), len(rows)))
    assert perf.confusion == dict(Counter(f"{t} -> {q}" for t, q in zip(y, shown, strict=True)))
    assert perf.true_count == dict(Counter(y))
    assert perf.predicted_count == dict(Counter(shown))
    assert perf.true_positive == dict(Counter(t for t, q in zip(y, p, strict=True) if t == q))
    assert perf.metrics["other_pred_count"] == int(np.sum(p == None))  # noqa: E711
    per_class: dict[str, list[float | None]] = {"precision": [], "recall": [], "f1": []}
    for c in classes:
        tp, fp = np.sum((y == c) & (p == c)), np.sum((y != c) & (p == c))
        fn = np.sum((y == c) & (p != c))
        values = {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
                  "f1": ratio(2 * tp, 2 * tp + fp + fn)}
        for metric, value in values.items():
            assert_close(perf.metrics[f"{metric}.{c}"], value)
            assert_close(perf.per_class[metric].get(c), value)
            per_class[metric].append(value)
    for metric, values_ in per_class.items():
        assert_close(perf.metrics[f"{metric}_macro"], mean_defined(values_))
    assert perf.per_class["roc_auc"] == {}
    assert perf.errors.tolist() == [float(t != q) for t, q in zip(y, p, strict=True)]
    assert perf.losses.tolist() == perf.errors.tolist()  # no probabilities: the errors
    assert (perf.metrics["log_loss"], perf.metrics["roc_auc"], perf.metrics["ece"]) == (
        None, None, None)


def test_a_missing_prediction_is_wrong_and_predicted_as_other() -> None:
    perf = summarize(pairs([(1, None, "a", None, {}, 1.0), (2, "a", "a", None, {}, 1.0),
                            (3, "b", "b", None, {}, 1.0)]))
    assert perf.errors.tolist() == [1.0, 0.0, 0.0]
    assert perf.metrics["accuracy"] == pytest.approx(2 / 3)
    assert perf.metrics["recall.a"] == 0.5
    assert perf.metrics["precision.a"] == 1.0
    assert OTHER == "(other)"
    assert perf.confusion == {f"a -> {OTHER}": 1, "a -> a": 1, "b -> b": 1}
    assert perf.predicted_count == {"a": 1, "b": 1, OTHER: 1}


def test_a_class_named_other_is_not_confused_with_the_other_slot() -> None:
    perf = summarize(pairs([(0, None, "other", None, {}, 1.0), (1, "ok", "ok", None, {}, 1.0)]))
    assert perf.metrics["accuracy"] == 0.5
    assert perf.errors.tolist() == [1.0, 0.0]
    assert perf.confusion == {f"other -> {OTHER}": 1, "ok -> ok": 1}
    assert perf.true_count == {"other": 1, "ok": 1}
    assert perf.predicted_count == {OTHER: 1, "ok": 1}
    assert perf.metrics["recall.other"] == 0.0


def test_classes_beyond_max_classes_count_together_as_other() -> None:
    names = [f"c{i:02d}" for i in range(MAX_CLASSES + 5)]
    # c00..c49 are labels 3 times each (one of them predicted c00); the five rarest once,
    # predicted right: they become OTHER, and "OTHER -> OTHER" is still right.
    rows: list[Row] = []
    for i, name in enumerate(names):
        predictions = [names[0], name, name] if i < MAX_CLASSES else [name]
        rows += [(len(rows) + j, p, name, None, {}, 1.0) for j, p in enumerate(predictions)]
    perf = summarize(pairs(rows))
    correct = sum(r[1] == r[2] for r in rows)
    assert perf.correct_count == correct
    assert perf.metrics["accuracy"] == pytest.approx(correct / len(rows))  # as y == pred
    assert perf.true_count[OTHER] == 5
    assert perf.metrics["other_true_count"] == 5
    assert len(perf.per_class["recall"]) == MAX_CLASSES
    assert perf.confusion[f"{OTHER} -> {OTHER}"] == 5


def test_one_class_window_is_padded_to_two_classes() -> None:
    perf = summarize(pairs([(i, "ok", "ok", None, {}, 1.0) for i in range(5)]
                           + [(9, None, "ok", None, {}, 1.0)]))
    assert perf.task == "classification"
    assert perf.metrics["accuracy"] == pytest.approx(5 / 6)
    assert perf.true_count == {"ok": 6}
    # The padding class has no rows: it is left out of per-class and macro values.
    assert perf.per_class["precision"] == {"ok": 1.0}
    assert perf.metrics["f1_macro"] == pytest.approx(10 / 11)
    assert perf.metrics["roc_auc"] is None


# --- binary classification with a bare score -----------------------------------------------


@pytest.mark.parametrize(("rows", "configured", "expected"), [
    # configured: whatever the names
    ([("0", "0", 0.9), ("1", "1", 0.2)], "0", "0"),
    ([("ok", "ok", 0.9), ("fraud", "ok", 0.2)], "fraud", "fraud"),
    # 0/1 -> "1", even when "0" is what high scores predict
    ([("0", "0", 0.9), ("0", "1", 0.8), ("1", "1", 0.2)], None, "1"),
    ([("false", "true", 0.9), ("true", "false", 0.1)], None, "true"),
    ([("False", "True", 0.9), ("True", "False", 0.1)], None, "True"),
    # one class of a 0/1 window: still "1" (the padding class)
    ([("0", "0", 0.1), ("0", "0", 0.6)], None, "1"),
    ([("1", "1", 0.1)], None, "1"),
    # other names: the class predicted most often when score >= 0.5
    ([("fraud", "ok", 0.9), ("fraud", "fraud", 0.7), ("ok", "ok", 0.1)], None, "fraud"),
    ([("ok", "ok", 0.9), ("ok", "fraud", 0.5), ("fraud", "fraud", 0.2)], None, "ok"),
    # a tie: the first name
    ([("ok", "ok", 0.9), ("fraud", "fraud", 0.6)], None, "fraud"),
    # no score at or above 0.5, or no score at all: none
    ([("ok", "ok", 0.4), ("fraud", "fraud", 0.1)], None, ""),
    ([("ok", "ok", None), ("fraud", "fraud", None)], None, ""),
])
def test_positive_class_of_a_bare_score(rows: list[tuple[str, str, float | None]],
                                        configured: str | None, expected: str) -> None:
    perf = summarize(pairs([(i, p, y, s, {}, 1.0) for i, (p, y, s) in enumerate(rows)]),
                     positive_class=configured)
    assert perf.positive_class == expected


def test_without_a_positive_class_the_score_is_not_used() -> None:
    perf = summarize(pairs([(0, "ok", "ok", 0.4, {}, 1.0), (1, "fraud", "fraud", 0.1, {}, 1.0),
                            (2, "fraud", "ok", 0.2, {}, 1.0)]))
    assert perf.positive_class == ""
    assert (perf.metrics["log_loss"], perf.metrics["roc_auc"]) == (None, None)
    assert perf.losses.tolist() == perf.errors.tolist() == [0.0, 0.0, 1.0]


@FAST
@given(scored_rows())
def test_binary_score_metrics_match_numpy(rows: list[Row]) -> None:
    perf = summarize(pairs(rows))
    ordered = in_time_order(rows)
    y = np.array([r[2] for r in ordered])
    p = np.array(["" if r[1] is None else r[1] for r in ordered])
    s = np.array([np.nan if r[3] is None else r[3] for r in ordered])
    assert perf.positive_class == "1"
    scored = ~np.isnan(s)
    positive = y[scored] == "1"
    assert_auc_within_bound(perf.metrics["roc_auc"], s[scored], positive)
    assert perf.metrics["roc_auc"] == perf.metrics["roc_auc.1"]
    assert_auc_within_bound(perf.metrics["roc_auc.0"], 1.0 - s[scored], ~positive)
    assert sum(perf.score_positive) == int(positive.sum())
    assert sum(perf.score_negative) == int((~positive).sum())
    p_true = np.where(y == "1", s, 1.0 - s)[scored]
    terms = -np.log(np.maximum(p_true, LOG_LOSS_CLIP))
    assert perf.log_loss_count == perf.metrics["log_loss_count"] == int(scored.sum())
    assert_close(perf.metrics["log_loss"], float(np.mean(terms)) if terms.size else None,
                 abs_=FIXED_POINT)
    assert perf.log_loss_sum == pytest.approx(np.sum(terms), abs=FIXED_POINT * terms.size)
    errors = (y != p).astype(float)
    assert perf.errors.tolist() == errors.tolist()
    with np.errstate(divide="ignore"):
        row_loss = np.minimum(-np.log(np.where(y == "1", s, 1.0 - s)), MAX_ROW_LOSS)
    expected = np.where(scored, row_loss, errors)
    np.testing.assert_allclose(perf.losses, expected, rtol=1e-12, atol=0)


def test_log_loss_is_clipped_and_the_row_loss_capped() -> None:
    perf = summarize(pairs([(0, "1", "0", 1.0, {}, 1.0), (1, "1", "1", 1.0, {}, 1.0)]))
    assert perf.metrics["log_loss"] == pytest.approx(-math.log(LOG_LOSS_CLIP) / 2,
                                                     abs=FIXED_POINT)
    assert perf.losses.tolist() == [MAX_ROW_LOSS, 0.0]


def test_errors_and_losses_follow_prediction_time_not_row_order() -> None:
    rows: list[Row] = [(3_000, "1", "0", 0.8, {}, 30.0), (1_000, "0", "0", 0.3, {}, 10.0),
                       (2_000, None, "1", None, {}, 20.0)]
    perf = summarize(pairs(rows))
    assert perf.errors.tolist() == [0.0, 1.0, 1.0]
    assert perf.losses.tolist() == pytest.approx([-math.log(0.7), 1.0, -math.log(0.2)])
    names = ("prediction_time", "prediction", "label", "score", "probabilities",
             "delay_seconds")
    columns = {name: [r[k] for r in rows] for k, name in enumerate(names)}
    assert comparable(summarize(PairColumns.from_columns(columns))) == comparable(perf)


def test_from_columns_of_an_empty_window() -> None:
    columns: dict[str, list[Any]] = {name: [] for name in (
        "prediction_time", "prediction", "label", "score", "probabilities", "delay_seconds")}
    assert comparable(summarize(PairColumns.from_columns(columns))) == comparable(
        summarize(pairs([])))


def test_a_one_class_window_with_a_configured_positive_class_scores_its_rows() -> None:
    scores = [0.1, 0.3, 0.05]
    perf = summarize(pairs([(i, "ok", "ok", s, {}, 1.0) for i, s in enumerate(scores)]),
                     positive_class="fraud")
    assert perf.positive_class == "fraud"
    expected = -np.log(1.0 - np.array(scores))
    assert perf.metrics["log_loss"] == pytest.approx(expected.mean(), abs=FIXED_POINT)
    assert perf.losses.tolist() == pytest.approx(expected.tolist())
    assert perf.metrics["roc_auc"] is None  # no positives


def test_a_one_class_0_window_scores_its_rows_as_p_of_1() -> None:
    # A 0/1 model's window in which only "0" occurs (common for rare positives): the score is
    # still P("1"), even when a score at or above 0.5 was predicted "0" (another threshold).
    perf = summarize(pairs([(0, "0", "0", 0.6, {}, 1.0), (1, "0", "0", 0.1, {}, 1.0)]))
    assert perf.positive_class == "1"
    assert perf.losses.tolist() == pytest.approx([-math.log(0.4), -math.log(0.9)])
    assert perf.metrics["log_loss"] == pytest.approx(
        (-math.log(0.4) - math.log(0.9)) / 2, abs=FIXED_POINT)


# --- multiclass with probabilities ---------------------------------------------------------


@FAST
@given(probability_rows())
def test_probability_metrics_match_numpy(rows: list[Row]) -> None:
    perf = summarize(pairs(rows))
    ordered = in_time_order(rows)
    y = np.array([r[2] for r in ordered])
    p = np.array(["" if r[1] is None else r[1] for r in ordered])
    has = np.array([bool(r[4]) for r in ordered], dtype=bool)
    errors = (y != p).astype(float)
    if not has.any():  # no map at all: as without probabilities
        assert perf.losses.tolist() == errors.tolist()
        assert perf.metrics["log_loss"] is None
        return
    classes = sorted({*y, *(v for v in p if v), *ANIMALS})  # the maps name all three
    proba = np.array([[r[4][c] if r[4] else np.nan for c in classes] for r in ordered])
    q, t = proba[has], y[has]
    codes = np.array([classes.index(c) for c in t], dtype=int)
    p_true = q[np.arange(t.size), codes]
    terms = -np.log(np.maximum(p_true, LOG_LOSS_CLIP))
    assert perf.log_loss_count == t.size
    assert perf.metrics["log_loss"] == pytest.approx(terms.mean(), abs=FIXED_POINT)
    aucs = []
    for i, c in enumerate(classes):
        assert_auc_within_bound(perf.metrics[f"roc_auc.{c}"], q[:, i], t == c)
        aucs.append(perf.metrics[f"roc_auc.{c}"])
    assert_close(perf.metrics["roc_auc"], mean_defined(aucs))
    top = q.argmax(axis=1)
    confidence = q[np.arange(t.size), top]
    correct = top == codes
    bins = np.minimum(np.floor(confidence * CALIBRATION_BINS), CALIBRATION_BINS - 1)
    gaps = [abs(confidence[bins == b].sum() - correct[bins == b].sum())
            for b in range(CALIBRATION_BINS)]
    assert perf.metrics["ece"] == pytest.approx(sum(gaps) / t.size, abs=FIXED_POINT)
    assert perf.calibration_count == np.bincount(bins.astype(int),
                                                 minlength=CALIBRATION_BINS).tolist()
    assert perf.calibration_correct == np.bincount(bins[correct].astype(int),
                                                   minlength=CALIBRATION_BINS).tolist()
    assert perf.positive_class == ""  # three classes: a bare score would mean nothing
    assert perf.score_positive == perf.score_negative == []
    with np.errstate(divide="ignore"):
        row_loss = np.minimum(-np.log(proba[np.arange(y.size), [classes.index(c) for c in y]]),
                              MAX_ROW_LOSS)
    np.testing.assert_allclose(perf.losses, np.where(has, row_loss, errors), rtol=1e-12)


def test_a_class_named_only_in_probabilities_is_a_class() -> None:
    proba = {"cat": 0.7, "dog": 0.2, "eel": 0.1}
    perf = summarize(pairs([(0, "cat", "cat", None, proba, 1.0),
                            (1, "dog", "dog", None, {}, 1.0)]))
    assert "precision.eel" in perf.metrics
    assert perf.metrics["recall.eel"] is None
    assert perf.log_loss_count == 1
    assert perf.losses.tolist() == pytest.approx([-math.log(0.7), 0.0])


# --- regression ----------------------------------------------------------------------------


@pytest.mark.parametrize(("labels", "predictions", "expected"), [
    ([str(i) for i in range(MAX_CLASSES_AS_NUMBERS + 1)], ["1.5"] * 21, "regression"),
    ([str(i * 0.5) for i in range(30)], [None] * 29 + ["-3e2"], "regression"),
    ([str(i) for i in range(MAX_CLASSES_AS_NUMBERS)], ["1"] * 20, "classification"),
    ([str(i % 3) for i in range(100)], ["1"] * 100, "classification"),
    ([*map(str, range(25)), "cat"], ["1"] * 26, "classification"),
    ([str(i) for i in range(25)], ["1"] * 24 + ["dog"], "classification"),
    ([], [], "classification"),
    # Every label and every present prediction must be a *finite* number: text "nan" and
    # "inf" parse as floats but make it a classifier, and so does |x| > MAX_ABS_VALUE.
    ([str(i) for i in range(25)], ["nan"] + ["1"] * 24, "classification"),
    ([str(i) for i in range(25)], ["NaN"] * 25, "classification"),
    ([str(i) for i in range(25)], ["1"] * 24 + ["inf"], "classification"),
    ([*map(str, range(24)), "nan"], ["1"] * 25, "classification"),
    ([*map(str, range(24)), "-inf"], ["1"] * 25, "classification"),
    ([*map(str, range(24)), "Infinity"], ["1"] * 25, "classification"),
    ([*map(str, range(24)), "1e300"], ["1"] * 25, "classification"),
    ([str(i) for i in range(25)], ["1"] * 24 + [repr(MAX_ABS_VALUE * 4)], "classification"),
    ([str(i) for i in range(25)], ["1"] * 24 + [repr(-MAX_ABS_VALUE)], "regression"),
    ([str(i) for i in range(25)], [None] * 25, "regression"),  # no prediction to judge by
    ([str(i) for i in range(25)], ["1", "", *["2"] * 23], "classification"),
])
def test_infer_task(labels: list[str], predictions: list[str | None], expected: str) -> None:
    assert infer_task(labels, predictions) == expected


@FAST
@given(regression_rows())
def test_regression_metrics_match_numpy(rows: list[Row]) -> None:
    perf = summarize(pairs(rows))
    ordered = in_time_order(rows)
    y_all = np.array([float(r[2]) for r in ordered])
    p_all = np.array([np.nan if r[1] is None else float(r[1]) for r in ordered])
    usable = ~np.isnan(p_all)
    y, pred = y_all[usable], p_all[usable]
    e = pred - y
    assert perf.task == "regression"
    assert perf.n_labeled == len(rows)
    assert perf.metrics["count"] == int(usable.sum())
    if not usable.any():
        assert perf.metrics["mae"] is None
        return
    scale = max(1.0, float(np.max(np.abs(y))), float(np.max(np.abs(pred))))
    tol = 1e-9 * scale
    assert perf.metrics["mae"] == pytest.approx(np.mean(np.abs(e)), rel=1e-9, abs=tol)
    assert perf.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-9, abs=tol)
    assert perf.metrics["mean_error"] == pytest.approx(np.mean(e), rel=1e-9, abs=tol)
    nonzero = y != 0
    assert perf.ape_count == int(nonzero.sum())
    assert perf.metrics["target_zero_count"] == int((~nonzero).sum())
    expected_mape = np.mean(np.abs(e[nonzero]) / np.abs(y[nonzero])) if nonzero.any() else None
    assert_close(perf.metrics["mape"], expected_mape, abs_=1e-9)
    centred = np.sum((y - y.mean()) ** 2)
    if centred > 1e-6 * np.sum(y**2):
        assert perf.metrics["r2"] == pytest.approx(1 - np.sum(e**2) / centred, rel=1e-6,
                                                   abs=1e-9)
    assert perf.regression_sums["abs_error"] == pytest.approx(np.sum(np.abs(e)), rel=1e-9,
                                                              abs=tol)
    assert perf.regression_sums["target"] == pytest.approx(np.sum(y), rel=1e-9, abs=tol)
    errors = np.where(usable, np.abs(p_all - y_all), np.nan)
    np.testing.assert_array_equal(perf.errors, errors)
    np.testing.assert_array_equal(perf.losses, errors)


def test_regression_leaves_zero_labels_out_of_mape_and_missing_predictions_out() -> None:
    values = [(str(float(i)), str(float(i) + 1.0)) for i in range(1, 25)]
    rows: list[Row] = [(i, p, y, None, {}, 1.0) for i, (y, p) in enumerate(values)]
    rows += [(100, "2.0", "0", None, {}, 1.0), (101, None, "7.5", None, {}, 1.0)]
    perf = summarize(pairs(rows))
    assert perf.task == "regression"
    assert perf.metrics["count"] == 25  # the row without a prediction is left out
    assert perf.metrics["mae"] == pytest.approx((24 + 2) / 25)
    assert perf.metrics["mean_error"] == pytest.approx((24 + 2) / 25)
    assert perf.metrics["mape"] == pytest.approx(np.mean(1 / np.arange(1, 25)))
    assert perf.metrics["target_zero_count"] == 1
    assert perf.errors[-1] != perf.errors[-1]  # NaN: skipped by the detectors


def test_a_configured_regressor_leaves_rows_without_two_finite_numbers_out() -> None:
    """A window whose task is configured "regression" but that holds a label that is no
    number, a "nan"/"inf" prediction or a value beyond MAX_ABS_VALUE: no exception; those
    rows are left out of the metrics and are NaN in the error stream."""
    good = [(str(float(i)), str(float(i) + 0.5 * (-1) ** i)) for i in range(30)]
    rows: list[Row] = [(i, p, y, None, {}, 1.0) for i, (y, p) in enumerate(good)]
    bad: list[Row] = [(100, "3.0", "cat", None, {}, 1.0),  # a label that is no number
                      (101, "nan", "4.0", None, {}, 1.0),  # a prediction "nan"
                      (102, "inf", "5.0", None, {}, 1.0),
                      (103, "6.0", "-Infinity", None, {}, 1.0),
                      (104, "7.0", "1e300", None, {}, 1.0),  # beyond MAX_ABS_VALUE
                      (105, None, "8.0", None, {}, 1.0),
                      (106, "", "9.0", None, {}, 1.0)]
    perf = summarize(pairs(rows + bad), task="regression")
    assert perf.task == "regression"
    assert perf.n_labeled == len(rows) + len(bad)
    assert perf.metrics["count"] == len(rows)
    assert perf.metrics["mae"] == pytest.approx(0.5)
    assert perf.metrics["mean_error"] == pytest.approx(0.0, abs=1e-12)
    assert perf.regression_sums["abs_error"] == pytest.approx(15.0)
    assert perf.regression_sums["target"] == pytest.approx(435.0)
    assert perf.ape_count == 29  # the label 0.0 has no percentage error
    assert perf.errors[: len(rows)].tolist() == [0.5] * len(rows)
    assert np.isnan(perf.errors[len(rows):]).all()  # skipped by the detectors
    np.testing.assert_array_equal(perf.losses, perf.errors)
    for row in bad:  # one bad row alone: nothing to measure, still no exception
        alone = summarize(pairs([row]), task="regression")
        assert (alone.metrics["count"], alone.metrics["mae"]) == (0, None)
        assert np.isnan(alone.errors).all()
    # Not configured, 37 distinct labels are a regressor's only when every value is a
    # finite number: the good rows alone are, with any one bad row they are not (a missing
    # prediction is no value, so that row leaves the inference as it is).
    assert summarize(pairs(rows)).task == "regression"
    for row in bad:
        expected = "regression" if row[1] is None else "classification"
        assert summarize(pairs([*rows, row])).task == expected


def test_the_task_can_be_set_against_the_inference() -> None:
    rows: list[Row] = [(i, str(i % 3), str(i % 3), None, {}, 1.0) for i in range(9)]
    assert summarize(pairs(rows), task="regression").metrics["mae"] == 0.0
    many: list[Row] = [(i, str(i), str(i), None, {}, 1.0) for i in range(30)]
    forced = summarize(pairs(many), task="classification")
    assert (forced.task, forced.metrics["accuracy"], len(forced.true_count)) == (
        "classification", 1.0, 30)


# --- delays, empty windows -----------------------------------------------------------------


@FAST
@given(st.one_of(labelled_rows(), regression_rows()))
def test_delays_are_a_histogram_of_the_rows_delays(rows: list[Row]) -> None:
    perf = summarize(pairs(rows))
    delays = np.array([r[5] for r in in_time_order(rows)], dtype=np.float64)
    expected = DelayHistogram().add(delays)
    assert perf.delay.to_columns() == expected.to_columns()
    assert perf.delay_quantiles() == {
        f"delay_p{q}_seconds": v for q, v in zip((50, 90, 99),
                                                 expected.quantiles([0.5, 0.9, 0.99]),
                                                 strict=True)}
    assert perf.delay_sum_seconds == pytest.approx(float(delays.sum()), rel=1e-12)


@pytest.mark.parametrize("task", [None, "classification", "regression"])
def test_an_empty_window_has_defined_values(task: Any) -> None:
    perf = summarize(pairs([]), task=task)
    assert perf.task == (task or "classification")
    assert perf.n_labeled == 0
    assert perf.delay_sum_seconds == 0.0
    assert perf.delay_quantiles() == dict.fromkeys(
        ("delay_p50_seconds", "delay_p90_seconds", "delay_p99_seconds"))
    assert perf.errors.size == perf.losses.size == 0
    for name in ("accuracy", "f1_macro", "roc_auc", "log_loss", "ece", "mae", "rmse", "mape"):
        assert perf.metrics.get(name) is None
    assert (perf.correct_count, perf.true_count, perf.confusion) == (0, {}, {})


# --- the order rows are read in does not matter --------------------------------------------


ANY_WINDOW = st.one_of(labelled_rows(distinct_times=True), scored_rows(distinct_times=True),
                       probability_rows(distinct_times=True), regression_rows(True))


@FAST
@given(ANY_WINDOW, st.data())
def test_a_permutation_of_the_rows_gives_the_same_result(rows: list[Row],
                                                         data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(rows))
    assert comparable(summarize(pairs(shuffled))) == comparable(summarize(pairs(rows)))


@FAST
@given(st.one_of(labelled_rows(), scored_rows(), probability_rows(), regression_rows()),
       st.data())
def test_rows_at_the_same_time_change_only_the_stream_order(rows: list[Row],
                                                            data: st.DataObject) -> None:
    """Without request ids, with tied prediction times, the counts and metrics are the same;
    the error stream holds the same values; the float delay sum may differ in its last
    bits."""
    tied = [(0, *row[1:]) for row in rows]
    shuffled = data.draw(st.permutations(tied))
    a, b = comparable(summarize(pairs(tied))), comparable(summarize(pairs(shuffled)))
    for name in ("errors", "losses"):
        assert sorted(a.pop(name), key=str) == sorted(b.pop(name), key=str)
    assert a.pop("delay_sum_seconds") == pytest.approx(b.pop("delay_sum_seconds"), rel=1e-12)
    assert a == b


COLUMN_NAMES = ("prediction_time", "prediction", "label", "score", "probabilities",
                "delay_seconds")


def columns_of(rows: Sequence[Row], request_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Rows as query result columns, as a ClickHouse read gives them."""
    columns = {name: [r[k] for r in rows] for k, name in enumerate(COLUMN_NAMES)}
    return {**columns, "request_id": list(request_ids)}


@FAST
@given(st.one_of(labelled_rows(), scored_rows(), probability_rows(), regression_rows()),
       st.integers(0, 3), st.data())
def test_with_request_ids_tied_rows_are_read_in_one_order(rows: list[Row], spread: int,
                                                          data: st.DataObject) -> None:
    """From columns with a request id, ties in prediction time are broken by the id: shuffled
    tied rows give identical errors and losses streams and identical delay sums (the
    ordering is by time, then id)."""
    times = data.draw(st.lists(st.integers(0, spread), min_size=len(rows), max_size=len(rows)))
    ids = data.draw(st.lists(st.uuids().map(str), min_size=len(rows), max_size=len(rows),
                             unique=True))
    tied = [((t, *row[1:]), i) for row, t, i in zip(rows, times, ids, strict=True)]
    shuffled = data.draw(st.permutations(tied))
    a = summarize(PairColumns.from_columns(columns_of(*_unzip(tied))))
    b = summarize(PairColumns.from_columns(columns_of(*_unzip(shuffled))))
    assert comparable(a) == comparable(b)  # errors, losses, delay sum, every count
    np.testing.assert_array_equal(a.errors, b.errors)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.delay_sum_seconds == b.delay_sum_seconds
    by_time_then_id = [row for row, _ in sorted(tied, key=lambda ri: (ri[0][0], ri[1]))]
    assert comparable(summarize(pairs(by_time_then_id))) == comparable(a)


def _unzip(rows_ids: Sequence[tuple[Row, str]]) -> tuple[list[Row], list[str]]:
    return [r for r, _ in rows_ids], [i for _, i in rows_ids]


def test_request_ids_break_a_tie_the_read_order_would_decide() -> None:
    rows: list[Row] = [(5, "a", "a", None, {}, 0.1), (5, "b", "a", None, {}, 0.2),
                       (5, None, "b", None, {}, 0.3), (1, "b", "b", None, {}, 0.0)]
    ids = ["r3", "r1", "r2", "r9"]
    forward = summarize(PairColumns.from_columns(columns_of(rows, ids)))
    backward = summarize(PairColumns.from_columns(columns_of(rows[::-1], ids[::-1])))
    # Time 1 first, then r1, r2, r3: right, wrong, wrong, right.
    assert forward.errors.tolist() == backward.errors.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert forward.delay_sum_seconds == backward.delay_sum_seconds == 0.2 + 0.3 + 0.1
    # Without ids the read order decides the stream (stable by time), and the float sum.
    without = [{k: v for k, v in columns_of(r, ids).items() if k != "request_id"}
               for r in (rows, rows[::-1])]
    as_read, reversed_ = (summarize(PairColumns.from_columns(c)) for c in without)
    assert as_read.errors.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert reversed_.errors.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert (as_read.delay_sum_seconds, reversed_.delay_sum_seconds) == (0.1 + 0.2 + 0.3,
                                                                        0.3 + 0.2 + 0.1)
    assert as_read.delay_sum_seconds != reversed_.delay_sum_seconds


def test_a_missing_prediction_of_an_empty_label_is_wrong() -> None:
    perf = summarize(pairs([(0, None, "", None, {}, 1.0), (1, "a", "a", None, {}, 1.0)]))
    assert perf.errors.tolist() == [1.0, 0.0]
    assert perf.correct_count == 1
    assert perf.confusion == {f" -> {OTHER}": 1, "a -> a": 1}
