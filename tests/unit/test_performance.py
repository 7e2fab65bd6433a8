"""Delayed-label performance accumulators against plain numpy versions of sklearn's formulas,
and the contract the ClickHouse layout relies on: integer columns that add element-wise, so
retractions, corrections and any merge order give exactly the same state."""

from __future__ import annotations

import itertools
import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from driftline.models.quality.performance import (
    LOG_LOSS_CLIP,
    MAX_DELAY_SECONDS,
    ClassificationCounts,
    DelayHistogram,
    RegressionSums,
    binned_auc,
    coverage,
)

FAST = settings(max_examples=60, deadline=None)
BINARY = ("fraud", "ok")
MULTI = ("0", "1", "2")
EDGE_PROBABILITIES = (0.0, 1.0, 0.5, 0.02, 0.1, 0.98, 0.3, 0.7)

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


def label_arrays(classes: Sequence[str], n: int) -> st.SearchStrategy[np.ndarray]:
    labels = st.sampled_from([*classes, *classes, "x", "y"])
    return st.lists(labels, min_size=n, max_size=n).map(lambda xs: np.array(xs, dtype=object))


@st.composite
def classification_batches(draw: st.DrawFn, classes: Sequence[str], max_size: int = 60) -> Batch:
    """Labels (some outside ``classes``) and probability rows (some NaN, some on bin edges)."""
    n = draw(st.integers(0, max_size))
    y_true, y_pred = draw(label_arrays(classes, n)), draw(label_arrays(classes, n))
    probability = st.one_of(st.floats(0.0, 1.0), st.sampled_from(EDGE_PROBABILITIES))
    proba = draw(hnp.arrays(np.float64, (n, len(classes)), elements=probability))
    missing = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    proba[np.array(missing, dtype=bool).reshape(n)] = np.nan
    return y_true, y_pred, proba


def binary_batch(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred, proba = batch
    return y_true, y_pred, proba[:, 1]


_VALUE = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, -2.5, 1e-300]))
_DELAY = st.one_of(st.floats(-10.0, 4e6), st.sampled_from([0.0, 1.0, 60.0, 2_592_000.0]))


def value_arrays(n: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, n, elements=_VALUE)


def delay_arrays(n: int) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, n, elements=_DELAY)


regression_batches = st.integers(0, 60).flatmap(
    lambda n: st.tuples(value_arrays(n), value_arrays(n)))
delay_batches = st.integers(0, 80).flatmap(delay_arrays)


def splits(n: int, data: st.DataObject) -> list[slice]:
    cuts = [0, *sorted(data.draw(st.lists(st.integers(0, n), max_size=4))), n]
    return [slice(a, b) for a, b in itertools.pairwise(cuts)]


def column_sums(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What ClickHouse returns: ``sum()`` of scalar columns, ``sumForEach()`` of arrays."""
    total = dict(parts[0])
    for part in parts[1:]:
        for name, value in part.items():
            if isinstance(value, list):
                assert len(value) == len(total[name])
                total[name] = [a + b for a, b in zip(total[name], value, strict=True)]
            else:
                total[name] = total[name] + value
    return total


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def mean_defined(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def assert_close(actual: float | None, expected: float | None, rel: float = 1e-12,
                 abs_: float = 1e-12) -> None:
    assert (actual is None) == (expected is None), (actual, expected)
    if expected is not None:
        assert actual == pytest.approx(expected, rel=rel, abs=abs_)


# --- classification: metrics against numpy references --------------------------------------


def reference_classification(classes: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray,
                             proba: np.ndarray, n_bins: int = 50,
                             n_calibration: int = 10) -> dict[str, float | None]:
    t, p = y_true.astype(str), y_pred.astype(str)
    out: dict[str, float | None] = {"count": t.size,
                                    "accuracy": float(np.mean(t == p)) if t.size else None}
    per_class: dict[str, list[float | None]] = {"precision": [], "recall": [], "f1": []}
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        values = {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
                  "f1": ratio(2 * tp, 2 * tp + fp + fn)}
        for metric, value in values.items():
            out[f"{metric}.{c}"] = value
            per_class[metric].append(value)
    for metric, values_ in per_class.items():
        out[f"{metric}_macro"] = mean_defined(values_)
    scored = ~np.isnan(proba).any(axis=1)
    t, q = t[scored], proba[scored]
    known = np.isin(t, classes)
    columns = np.array([classes.index(c) for c in t[known]], dtype=int)
    p_true = q[known][np.arange(columns.size), columns]
    out["log_loss"] = float(np.mean(-np.log(np.clip(p_true, LOG_LOSS_CLIP, 1.0)))) \
        if columns.size else None
    aucs = []
    for i, c in enumerate(classes):
        rounded = np.minimum(np.floor(q[:, i] * n_bins), n_bins - 1) / n_bins
        aucs.append(mann_whitney_auc(rounded[t == c], rounded[t != c]))
        out[f"roc_auc.{c}"] = aucs[-1]
    out["roc_auc"] = aucs[1] if len(classes) == 2 else mean_defined(aucs)
    top = q.argmax(axis=1)
    confidence = q.max(axis=1)
    correct = np.array(classes)[top] == t if t.size else np.zeros(0, bool)
    bins = np.minimum(np.floor(confidence * n_calibration), n_calibration - 1)
    gaps = [abs(confidence[bins == b].sum() - correct[bins == b].sum())
            for b in range(n_calibration)]
    out["ece"] = float(np.sum(gaps)) / t.size if t.size else None
    return out


def mann_whitney_auc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """P(score_pos > score_neg) + P(tie) / 2 over all pairs: the exact ROC AUC."""
    if positives.size == 0 or negatives.size == 0:
        return None
    diff = positives[:, None] - negatives[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def assert_metrics_match(classes: Sequence[str], counts: ClassificationCounts,
                         batch: Batch) -> None:
    metrics = counts.metrics()
    expected = reference_classification(classes, *batch)
    for key, value in expected.items():
        tolerance = 2.0**-25 if key in ("ece", "log_loss") else 1e-12
        assert_close(metrics[key], value, abs_=tolerance)


@FAST
@given(classification_batches(MULTI))
def test_multiclass_metrics_match_numpy_reference(batch: Batch) -> None:
    counts = ClassificationCounts(MULTI).add(batch[0], batch[1], proba=batch[2])
    assert_metrics_match(MULTI, counts, batch)


@FAST
@given(classification_batches(BINARY))
def test_binary_score_metrics_match_numpy_reference(batch: Batch) -> None:
    y_true, y_pred, score = binary_batch(batch)
    counts = ClassificationCounts(BINARY).add(y_true, y_pred, score=score)
    proba = np.column_stack([1.0 - score, score])
    assert_metrics_match(BINARY, counts, (y_true, y_pred, proba))


@FAST
@given(classification_batches(MULTI, max_size=120))
def test_binned_auc_error_is_within_the_stated_bound(batch: Batch) -> None:
    y_true, _, proba = batch
    counts = ClassificationCounts(MULTI).add(y_true, y_true, proba=proba)
    columns = counts.to_columns()
    scored = ~np.isnan(proba).any(axis=1)
    for i, c in enumerate(MULTI):
        cells = slice(50 * i, 50 * (i + 1))
        pos = np.array(columns["score_positive"][cells])
        neg = np.array(columns["score_negative"][cells])
        binned = counts.metrics()[f"roc_auc.{c}"]
        is_c = y_true[scored].astype(str) == c
        exact = mann_whitney_auc(proba[scored, i][is_c], proba[scored, i][~is_c])
        assert (binned is None) == (exact is None)
        if binned is not None and exact is not None:
            bound = float(pos @ neg) / (2 * pos.sum() * neg.sum())
            assert abs(binned - exact) <= bound + 1e-12


def test_binned_auc_is_the_trapezoid_over_the_binned_roc() -> None:
    pos, neg = np.array([0, 1, 3, 2]), np.array([4, 2, 1, 0])
    # ROC points from the highest threshold down: one per bin edge.
    tpr = np.concatenate([[0.0], np.cumsum(pos[::-1]) / pos.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(neg[::-1]) / neg.sum()])
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert binned_auc(pos.tolist(), neg.tolist()) == pytest.approx(trapezoid, rel=1e-15)
    assert binned_auc([0, 0], [1, 2]) is None


def test_labels_compare_as_text_and_unknown_labels_go_to_other() -> None:
    counts = ClassificationCounts(MULTI).add(
        np.array([0, 1, 2, 7, 7, "z"], dtype=object), np.array(["0", 2, 2, 7, 8, "z"]))
    assert counts.confusion_matrix.tolist() == [
        [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 3]]
    metrics = counts.metrics()
    assert metrics["accuracy"] == 4 / 6  # 7 == 7 and "z" == "z" are correct, 7 vs 8 is not
    assert (metrics["other_true_count"], metrics["other_pred_count"]) == (3, 3)
    assert metrics["precision.1"] is None and metrics["recall.1"] == 0.0
    assert metrics["f1.1"] == 0.0 and metrics["precision_macro"] == pytest.approx(3 / 4)


# --- regression: metrics against numpy references -------------------------------------------


def reference_regression(y: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    if y.size == 0:
        return dict.fromkeys(("mae", "rmse", "mean_error", "mape"))
    e = pred - y
    nonzero = y != 0
    with np.errstate(divide="ignore", over="ignore"):
        ape = np.minimum(np.abs(e[nonzero]) / np.abs(y[nonzero]), 2.0**64)
    return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e * e))),
            "mean_error": float(np.mean(e)), "mape": float(np.mean(ape)) if ape.size else None}


@FAST
@given(regression_batches)
def test_regression_metrics_match_numpy_reference(batch: tuple[np.ndarray, np.ndarray]) -> None:
    y, pred = batch
    metrics = RegressionSums().add(y, pred).metrics()
    scale = float(np.max(np.abs(pred - y), initial=1.0))
    for key, value in reference_regression(y, pred).items():
        grid = 2.0**-32 if key == "rmse" else 2.0**-64  # RMSE: √ of the 2**-65 on MSE
        assert_close(metrics[key], value, rel=1e-12, abs_=1e-12 * scale + grid)
    assert (metrics["count"], metrics["target_zero_count"]) == (y.size, np.sum(y == 0))


@FAST
@given(regression_batches)
def test_r2_matches_numpy_reference_when_the_variance_is_resolved(
        batch: tuple[np.ndarray, np.ndarray]) -> None:
    y, pred = batch
    r2 = RegressionSums().add(y, pred).metrics()["r2"]
    sst = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    resolution = 2.0**-50 * float(np.sum(y * y)) + 2.0**-64 * (abs(float(np.sum(y))) + y.size)
    if sst > 2.0**20 * resolution:
        assert r2 == pytest.approx(1 - np.sum((pred - y) ** 2) / sst, rel=1e-6, abs=1e-9)
    elif sst <= resolution / 4:
        assert r2 is None


@pytest.mark.parametrize("value", [0.1, 1e6 + 0.3, -7.0, 0.0])
def test_r2_is_none_for_a_constant_target(value: float) -> None:
    y = np.full(1_000, value)
    metrics = RegressionSums().add(y, y + 1.0).metrics()
    assert metrics["r2"] is None and metrics["mae"] == pytest.approx(1.0)


def test_retracting_huge_targets_leaves_small_ones_exact() -> None:
    sums = RegressionSums().add(np.array([1e12, 3.0]), np.array([1e12 + 7.0, 4.0]))
    sums.add(np.array([1e12]), np.array([1e12 + 7.0]), sign=-1)
    assert sums.to_columns() == RegressionSums().add(np.array([3.0]), np.array([4.0])).to_columns()


# --- delays and coverage ------------------------------------------------------------------------


@FAST
@given(delay_batches, st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_delay_quantiles_lie_in_the_bin_of_the_exact_quantile(
        delays: np.ndarray, levels: list[float]) -> None:
    histogram = DelayHistogram().add(delays)
    estimates = histogram.quantiles(levels)
    if delays.size == 0:
        assert estimates == [None] * len(levels)
        return
    clamped = np.maximum(delays, 0.0)
    bounds = np.concatenate([[0.0], histogram.edges, [math.inf]])
    for level, estimate in zip(levels, estimates, strict=True):
        exact = float(np.quantile(clamped, level, method="inverted_cdf"))
        b = np.searchsorted(histogram.edges, exact, side="right")
        assert estimate is not None
        assert bounds[b] <= estimate <= min(bounds[b + 1], MAX_DELAY_SECONDS)
    assert histogram.to_columns()["delay_negative_count"] == int(np.sum(delays < 0))


def test_delay_layout_is_log_spaced_from_one_second_to_thirty_days() -> None:
    histogram = DelayHistogram(n_bins=4)
    assert histogram.edges[0] == 1.0 and histogram.edges[-1] == 30 * 86_400
    ratios = histogram.edges[1:] / histogram.edges[:-1]
    assert np.allclose(ratios, ratios[0])
    histogram.add(np.array([0.5, 1.0, 3e6, 3e6]))
    assert histogram.to_columns()["delay_counts"] == [1, 1, 0, 0, 0, 2]
    assert histogram.quantiles([1.0]) == [30 * 86_400]  # overflow: a lower bound


def test_coverage() -> None:
    assert coverage(3, 4) == 0.75 and coverage(0, 0) is None and coverage(0, 5) == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        coverage(-1, 3)


# --- the additive contract, for every accumulator -----------------------------------------------

@dataclass(frozen=True)
class Case:
    """How to build, feed and rebuild one accumulator, and draw its batches and new labels."""

    factory: Callable[[], Any]
    add: Callable[[Any, Any, slice, int], Any]
    batches: st.SearchStrategy[Any]
    labels: Callable[[int], st.SearchStrategy[np.ndarray]]
    from_columns: Callable[[dict[str, Any]], Any]


def add_classification(acc: ClassificationCounts, batch: Batch, rows: slice, sign: int) -> Any:
    return acc.add(batch[0][rows], batch[1][rows], proba=batch[2][rows], sign=sign)


def add_regression(acc: RegressionSums, batch: tuple[np.ndarray, np.ndarray], rows: slice,
                   sign: int) -> Any:
    return acc.add(batch[0][rows], batch[1][rows], sign=sign)


def add_delays(acc: DelayHistogram, batch: np.ndarray, rows: slice, sign: int) -> Any:
    return acc.add(batch[rows], sign=sign)


CASES = {
    "classification": Case(lambda: ClassificationCounts(MULTI), add_classification,
                           classification_batches(MULTI), lambda n: label_arrays(MULTI, n),
                           lambda columns: ClassificationCounts.from_columns(columns, MULTI)),
    "regression": Case(RegressionSums, add_regression, regression_batches, value_arrays,
                       RegressionSums.from_columns),
    "delays": Case(DelayHistogram, add_delays, delay_batches, delay_arrays,
                   DelayHistogram.from_columns),
}


def batch_size(batch: Any) -> int:
    return len(batch[0]) if isinstance(batch, tuple) else len(batch)


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_split_adds_and_sql_sums_give_the_same_columns(case: str, data: st.DataObject) -> None:
    factory, add, from_columns = CASES[case].factory, CASES[case].add, CASES[case].from_columns
    batch = data.draw(CASES[case].batches)
    whole = add(factory(), batch, slice(None), 1).to_columns()
    parts = [add(factory(), batch, rows, 1) for rows in splits(batch_size(batch), data)]
    order = data.draw(st.permutations(range(len(parts))))
    merged = factory()
    for i in order:
        merged.merge(parts[i])
    assert merged.to_columns() == whole
    summed = column_sums([parts[i].to_columns() for i in order])
    assert from_columns(summed).to_columns() == whole
    # Associativity: (a + b) + c == a + (b + c), exactly.
    thirds = (splits(batch_size(batch), data) + [slice(0, 0)] * 2)[:3]
    a, b, c = (add(factory(), batch, rows, 1) for rows in thirds)
    left = factory().merge(a).merge(b).merge(c).to_columns()
    right = factory().merge(a).merge(factory().merge(b).merge(c)).to_columns()
    assert left == right


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_retracting_a_batch_restores_the_state_exactly(case: str, data: st.DataObject) -> None:
    factory, add = CASES[case].factory, CASES[case].add
    first, second = data.draw(CASES[case].batches), data.draw(CASES[case].batches)
    acc = add(factory(), second, slice(None), 1)
    assert add(acc, second, slice(None), -1).to_columns() == factory().to_columns()
    acc = add(add(factory(), first, slice(None), 1), second, slice(None), 1)
    expected = add(factory(), first, slice(None), 1).to_columns()
    assert add(acc, second, slice(None), -1).to_columns() == expected


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_correction_equals_adding_the_new_label_first(case: str, data: st.DataObject) -> None:
    factory, add = CASES[case].factory, CASES[case].add
    old = data.draw(CASES[case].batches)
    rows = data.draw(st.sampled_from(splits(batch_size(old), data)))
    corrected = with_labels(old, data.draw(CASES[case].labels(batch_size(old))), rows)
    acc = add(factory(), old, slice(None), 1)
    add(acc, old, rows, -1)
    add(acc, corrected, rows, 1)
    assert acc.to_columns() == add(factory(), corrected, slice(None), 1).to_columns()


def with_labels(batch: Any, labels: np.ndarray, rows: slice) -> Any:
    """``batch`` with the labels (the delays, for delays) of ``rows`` taken from ``labels``."""
    y = (batch[0] if isinstance(batch, tuple) else batch).copy()
    y[rows] = labels[rows]
    return (y, *batch[1:]) if isinstance(batch, tuple) else y


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_columns_round_trip_through_from_columns_json_and_pickle(
        case: str, data: st.DataObject) -> None:
    factory, from_columns = CASES[case].factory, CASES[case].from_columns
    acc = CASES[case].add(factory(), data.draw(CASES[case].batches), slice(None), 1)
    columns = acc.to_columns()
    assert from_columns(json.loads(json.dumps(columns))).to_columns() == columns
    assert pickle.loads(pickle.dumps(acc)).to_columns() == columns
    assert all(isinstance(v, int) or all(isinstance(x, int) for x in v) for v in columns.values())
    empty_layout = {k: len(v) if isinstance(v, list) else 1 for k, v in columns.items()}
    assert empty_layout == {k: len(v) if isinstance(v, list) else 1
                            for k, v in factory().to_columns().items()}


def test_empty_accumulators_have_defined_metrics() -> None:
    metrics = ClassificationCounts(BINARY).add(np.array([]), np.array([])).metrics()
    counts = {"count", "scored_count", "log_loss_count", "other_true_count", "other_pred_count"}
    assert {k for k, v in metrics.items() if v is not None} == counts
    assert all(metrics[k] == 0 for k in counts)
    regression = RegressionSums().add(np.array([]), np.array([])).metrics()
    assert {k: v for k, v in regression.items() if v is not None} == {
        "count": 0, "target_zero_count": 0}
    assert DelayHistogram().quantiles([0.5]) == [None]


def test_invalid_input_is_rejected() -> None:
    counts = ClassificationCounts(BINARY)
    y = np.array(["ok", "fraud"], dtype=object)
    bad_calls: list[Callable[[], Any]] = [
        lambda: counts.add(y, y, sign=2),
        lambda: counts.add(y, y[:1]),
        lambda: counts.add(y, y, proba=np.full((2, 3), 0.5)),
        lambda: counts.add(y, y, score=np.array([0.5, 1.5])),
        lambda: counts.add(y, y, score=np.array([0.5, 0.5]), proba=np.full((2, 2), 0.5)),
        lambda: ClassificationCounts(MULTI).add(y, y, score=np.array([0.5, 0.5])),
        lambda: ClassificationCounts(("a", "a")),
        lambda: counts.merge(ClassificationCounts(MULTI)),
        lambda: ClassificationCounts.from_columns(counts.to_columns(), MULTI),
        lambda: RegressionSums().add(np.array([np.nan]), np.array([1.0])),
        lambda: RegressionSums().add(np.array([1e19]), np.array([1.0])),
        lambda: DelayHistogram().add(np.array([np.inf])),
        lambda: DelayHistogram().add(np.array([5.0]), sign=-1).quantiles([0.5]),
        lambda: DelayHistogram().quantiles([1.5]),
        lambda: DelayHistogram(4).merge(DelayHistogram(5)),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
