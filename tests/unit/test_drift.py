"""Drift scores from histograms, checked against scipy on the raw samples they summarise.

Tolerances: 1e-12 where both sides compute the same quantity from the same counts; 1e-7 on
the JS distance (a square root turns 1e-16 of rounding near 0 into 1e-8); Wasserstein
within its stated error bound plus 1e-9 relative to the data range.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import kolmogorov

from driftline.models.drift.reference import CategoricalReference, NumericReference
from driftline.models.drift.scores import (
    CATEGORICAL_METRICS,
    NUMERIC_METRICS,
    DriftScore,
    NumericWindow,
    categorical_scores,
    chi_square,
    js_distance,
    ks_from_histograms,
    numeric_scores,
    numeric_scores_many,
    psi,
    unseen_share,
    wasserstein_from_histograms,
)
from driftline.models.windows.accumulators import edges_from_sample

FAST = settings(max_examples=80, deadline=None)
KINDS = ("normal", "shifted", "scaled", "ties", "constant", "heavy")


def draw_sample(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    match kind:
        case "normal":
            return rng.normal(size=n)
        case "shifted":
            return rng.normal(0.7, 1.0, size=n)
        case "scaled":
            return rng.normal(0.0, 3.0, size=n)
        case "ties":  # discrete, many ties, overlapping the other kinds' values
            return rng.integers(-1, 3, size=n).astype(np.float64)
        case "constant":
            return np.full(n, 1.0)
        case _:
            return rng.lognormal(0.0, 1.5, size=n)


@st.composite
def sample_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference and window samples, and fine edges from the reference (as the worker)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes = st.one_of(st.integers(1, 3), st.integers(1, 400))
    a = draw_sample(draw(st.sampled_from(KINDS)), draw(sizes), rng)
    b = draw_sample(draw(st.sampled_from(KINDS)), draw(sizes), rng)
    return a, b, edges_from_sample(a, draw(st.integers(1, 100)))


def histogram(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1)


def raw_ks(a: np.ndarray, b: np.ndarray) -> float:
    # Only the statistic, which no method changes; scipy's p-value warns on tiny samples.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy.stats.ks_2samp(a, b, method="asymp").statistic)


def finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


counts = st.one_of(st.just(0), st.integers(0, 10), st.integers(0, 10**12))


@st.composite
def count_pairs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    size = draw(st.integers(1, 30))
    return draw(st.lists(counts, min_size=size, max_size=size)), draw(
        st.lists(counts, min_size=size, max_size=size))


# --- each score against scipy -------------------------------------------------------------


@FAST
@given(count_pairs(), st.sampled_from([1e-6, 1e-4, 0.01, 0.5]))
def test_psi_is_symmetric_kl_of_smoothed_shares(counts: tuple[list[int], list[int]],
                                                smoothing: float) -> None:
    ref, win = (np.array(c, dtype=np.float64) for c in counts)
    value = psi(ref, win, smoothing)
    assert 0.0 <= value <= 2 * math.log1p(1 / smoothing)
    if ref.sum() == 0 or win.sum() == 0:
        assert value == 0.0
        return
    p = (ref / ref.sum() + smoothing) / (1 + ref.size * smoothing)
    q = (win / win.sum() + smoothing) / (1 + win.size * smoothing)
    expected = scipy.stats.entropy(p, q) + scipy.stats.entropy(q, p)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)


@FAST
@given(count_pairs())
def test_js_distance_matches_scipy(counts: tuple[list[int], list[int]]) -> None:
    ref, win = (np.array(c, dtype=np.float64) for c in counts)
    value = js_distance(ref, win)
    assert 0.0 <= value <= 1.0
    if ref.sum() == 0 or win.sum() == 0:
        assert value == 0.0
        return
    with np.errstate(invalid="ignore"):  # scipy takes sqrt of a rounding-negative 0
        expected = float(np.nan_to_num(jensenshannon(ref, win, base=2)))
    assert value == pytest.approx(expected, abs=1e-7)


@FAST
@given(sample_pairs())
def test_ks_brackets_the_raw_sample_statistic(data: tuple[np.ndarray, ...]) -> None:
    a, b, edges = data
    result = ks_from_histograms(edges, histogram(edges, a), histogram(edges, b))
    raw = raw_ks(a, b)
    assert result.statistic <= raw + 1e-12 <= result.upper_bound + 2e-12
    assert result.upper_bound <= 1.0
    coarse_bound = result.statistic + max(
        np.maximum(histogram(edges, a) / a.size, histogram(edges, b) / b.size))
    assert result.upper_bound <= coarse_bound + 1e-12
    n_e = a.size * b.size / (a.size + b.size)
    assert result.p_value >= kolmogorov(math.sqrt(n_e) * raw) - 1e-12  # conservative


@FAST
@given(sample_pairs())
def test_ks_is_exact_when_every_value_has_its_own_bin(data: tuple[np.ndarray, ...]) -> None:
    a, b, _ = data
    edges = np.unique(np.concatenate([a, b]))
    result = ks_from_histograms(edges, histogram(edges, a), histogram(edges, b))
    raw = raw_ks(a, b)
    n_e = a.size * b.size / (a.size + b.size)
    assert result.statistic == pytest.approx(raw, abs=1e-12)
    assert result.p_value == pytest.approx(scipy.stats.kstwobign.sf(math.sqrt(n_e) * raw),
                                           abs=1e-12)


@pytest.mark.parametrize(("n", "m", "shift"), [(400, 300, 0.0), (1000, 800, 0.1), (90, 2000, 0.3)])
def test_ks_p_value_is_close_to_scipy_asymp(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=n), rng.normal(shift, size=m)
    edges = np.unique(np.concatenate([a, b]))
    result = ks_from_histograms(edges, histogram(edges, a), histogram(edges, b))
    scipy_p = scipy.stats.ks_2samp(a, b, method="asymp").pvalue
    assert scipy_p - 1e-12 <= result.p_value <= scipy_p + 0.03


@FAST
@given(sample_pairs())
def test_wasserstein_is_within_its_bound_of_scipy(data: tuple[np.ndarray, ...]) -> None:
    a, b, edges = data
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    ref, win = histogram(edges, a), histogram(edges, b)
    result = wasserstein_from_histograms(edges, ref, win, (a.min(), a.max()), (b.min(), b.max()))
    raw = scipy.stats.wasserstein_distance(a, b)
    assert abs(raw - result.distance) <= result.error_bound + 1e-9 * (1 + hi - lo)
    assert 0.0 <= result.distance <= (hi - lo) * (1 + 1e-12)
    shared = np.diff(np.clip(np.concatenate([[lo], edges, [hi]]), lo, hi))
    assert result.error_bound <= shared @ np.maximum(ref / a.size, win / b.size) + 1e-12


def test_wasserstein_of_point_masses_is_exact_in_bins_of_their_own() -> None:
    # each sample alone in its bin: its own range pins it to a point
    result = wasserstein_from_histograms([0.0, 1.0, 2.0], [0, 5, 0, 0], [0, 0, 5, 0],
                                         (0.0, 0.0), (1.5, 1.5))
    assert result == (1.5, 0.0)
    # in a bin both have mass in, both spread over the same interval: within the bound
    shared = wasserstein_from_histograms([0.0, 1.0], [0, 5, 0], [0, 5, 0], (0.0, 0.0),
                                         (0.75, 0.75))
    assert abs(shared.distance - 0.75) <= shared.error_bound


@FAST
@given(count_pairs(), st.sampled_from([0.01, 0.5, 1.0]))
def test_chi_square_matches_scipy(counts: tuple[list[int], list[int]], smoothing: float) -> None:
    ref, win = (np.array(c, dtype=np.float64) for c in counts)
    result = chi_square(ref, win, smoothing)
    assert result.dof == ref.size - 1
    if ref.sum() == 0 or win.sum() == 0 or ref.size == 1:
        assert (result.statistic, result.p_value) == (0.0, 1.0)
        return
    expected = win.sum() * (ref + smoothing) / (ref.sum() + ref.size * smoothing)
    scipy_result = scipy.stats.chisquare(win, expected)
    assert result.statistic == pytest.approx(scipy_result.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(scipy_result.pvalue, rel=1e-9, abs=1e-300)


@FAST
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=50),
       st.lists(st.sampled_from(["a", "b", "c", "x"]), max_size=4, unique=True),
       st.lists(st.sampled_from(["d", "y"]), max_size=2, unique=True),
       st.integers(0, 5), st.integers(0, 3))
def test_unseen_share_counts_values_the_reference_never_saw(
    values: list[str], listed: list[str], rest: list[str], other: int, untracked: int
) -> None:
    """Seen: the listed categories and those the reference names in its rest."""
    reference = CategoricalReference(tuple(listed), (1,) * len(listed), other, 9, 0,
                                     rest=tuple(rest))
    window = {c: values.count(c) for c in set(values)}
    outside = sum(v not in listed and v not in rest for v in values) + untracked
    total = len(values) + untracked
    share = unseen_share(window, reference, untracked=untracked)
    assert share == (outside / total if total else 0.0)


# --- defined results: never NaN/inf, never an exception on data ---------------------------


@FAST
@given(count_pairs(), st.lists(st.floats(-1e6, 1e6), min_size=30, max_size=30, unique=True),
       st.lists(st.floats(-1e7, 1e7), min_size=4, max_size=4))
def test_no_score_is_ever_nan_or_inf(counts: tuple[list[int], list[int]], points: list[float],
                                     ranges: list[float]) -> None:
    ref, win = counts
    edges = sorted(points)[: len(ref) - 1]
    ks = ks_from_histograms(edges, ref, win)
    ref_range, win_range = (min(ranges[:2]), max(ranges[:2])), (min(ranges[2:]), max(ranges[2:]))
    w1 = wasserstein_from_histograms(edges, ref, win, ref_range, win_range)
    chi = chi_square(ref, win)
    assert finite(psi(ref, win), js_distance(ref, win), *ks, *w1, *chi)
    assert 0.0 <= ks.statistic <= ks.upper_bound <= 1.0 and 0.0 <= ks.p_value <= 1.0
    assert 0.0 <= chi.p_value <= 1.0 and w1.distance >= 0.0


def numeric_reference(sample: np.ndarray, fine_bins: int = 20) -> NumericReference:
    edges, fine = edges_from_sample(sample, 5), edges_from_sample(sample, fine_bins)
    return NumericReference(
        edges=tuple(edges), counts=tuple(histogram(edges, sample).tolist()),
        fine_edges=tuple(fine), fine_counts=tuple(histogram(fine, sample).tolist()),
        count=sample.size, missing_count=0, mean=float(sample.mean()), std=float(sample.std()),
        min=float(sample.min()), max=float(sample.max()), quantiles=(0.0,) * 7)


def score_numeric(reference: NumericReference, window: np.ndarray) -> dict[str, DriftScore]:
    edges, fine = np.array(reference.edges), np.array(reference.fine_edges)
    low, high = (float(f(window)) if window.size else math.nan for f in (np.min, np.max))
    scores = numeric_scores(reference, histogram(edges, window), histogram(fine, window),
                            low, high, psi_smoothing=1e-4)
    assert tuple(s.metric for s in scores) == NUMERIC_METRICS
    for s in scores:
        assert type(s.value) is float and finite(s.value, s.p_value, s.error_bound)
        assert (s.n_reference, s.n_window) == (sum(reference.fine_counts), window.size)
    return {s.metric: s for s in scores}


@FAST
@given(sample_pairs())
def test_numeric_scores_agree_with_the_low_level_scores(data: tuple[np.ndarray, ...]) -> None:
    a, b, _ = data
    reference = numeric_reference(a)
    scores = score_numeric(reference, b)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    w1 = scores["wasserstein"]
    raw = scipy.stats.wasserstein_distance(a, b)
    assert w1.error_bound is not None
    assert abs(raw - w1.value) <= w1.error_bound + 1e-9 * (1 + hi - lo)
    scale = reference.std if reference.std > 0 else hi - lo
    if scale > 0:
        assert scores["wasserstein_std"].value == pytest.approx(w1.value / scale)
    ks = scores["ks"]
    assert ks.value <= raw_ks(a, b) + 1e-12
    assert ks.error_bound is not None and ks.p_value is not None


@FAST
@given(st.lists(sample_pairs(), min_size=1, max_size=6), st.integers(0, 3))
def test_window_scored_at_once_equals_feature_by_feature(
        pairs: list[tuple[np.ndarray, ...]], empties: int) -> None:
    """A closing window's numeric features are scored as one matrix per bin layout; each
    feature's scores are exactly those of scoring it alone (empty windows too)."""
    references, windows = [], []
    for k, (a, b, _) in enumerate(pairs):
        reference = numeric_reference(a, fine_bins=10 + 10 * (k % 2))  # two layouts
        window = b[:0] if k < empties else b
        low, high = ((float(window.min()), float(window.max())) if window.size
                     else (math.nan, math.nan))
        references.append(reference)
        windows.append(NumericWindow(
            histogram(np.array(reference.edges), window).tolist(),
            histogram(np.array(reference.fine_edges), window).tolist(), low, high))
    together = numeric_scores_many(references, windows, psi_smoothing=1e-4)
    alone = [numeric_scores(r, *w, psi_smoothing=1e-4) for r, w in zip(references, windows,
                                                                         strict=True)]
    assert together == alone


def test_constant_reference_scores_wasserstein_in_range_units() -> None:
    reference = numeric_reference(np.full(50, 3.0))
    assert reference.std == 0.0
    moved = score_numeric(reference, np.full(10, 5.0))
    assert (moved["wasserstein"].value, moved["wasserstein"].error_bound) == (2.0, 0.0)
    assert moved["wasserstein_std"].value == 1.0  # W1 / (max - min) of both samples
    assert moved["ks"].value == 1.0 and moved["psi"].value > 1.0
    same = score_numeric(reference, np.full(10, 3.0))
    assert [s.value for s in same.values()] == [0.0] * 5


@pytest.mark.parametrize("window", [np.empty(0), np.array([0.5])])
def test_empty_and_single_value_windows_are_defined(window: np.ndarray) -> None:
    scores = score_numeric(numeric_reference(np.linspace(0.0, 1.0, 100)), window)
    if window.size == 0:
        for s in scores.values():
            assert (s.value, s.error_bound or 0.0, s.p_value or 1.0) == (0.0, 0.0, 1.0)
    else:
        assert scores["ks"].value == pytest.approx(0.5, abs=0.06)


def test_all_missing_reference_is_defined() -> None:
    empty = NumericReference((0.0, 1.0), (0, 0, 0), (0.0, 1.0), (0, 0, 0), 7, 7,
                             math.nan, math.nan, math.nan, math.nan, (math.nan,) * 7)
    scores = score_numeric(empty, np.array([0.2, 0.4]))
    assert [s.value for s in scores.values()] == [0.0] * 5
    assert scores["ks"].p_value == 1.0


def categorical(window: dict[str, int], other: int = 10) -> dict[str, DriftScore]:
    reference = CategoricalReference(("a", "b"), (60, 30), other, 100 + other, 0)
    scores = categorical_scores(reference, window, psi_smoothing=1e-4, chi_smoothing=0.5)
    assert tuple(s.metric for s in scores) == CATEGORICAL_METRICS
    assert all(finite(s.value, s.p_value) and type(s.value) is float for s in scores)
    return {s.metric: s for s in scores}


def test_categorical_scores_use_reference_categories_plus_a_rest_bucket() -> None:
    scores = categorical({"a": 40, "b": 30, "new": 20, "newer": 10}, other=0)
    expected = 100 * (np.array([60, 30, 0]) + 0.5) / (90 + 1.5)
    chi = scipy.stats.chisquare([40, 30, 30], expected)
    assert scores["chi2"].value == pytest.approx(chi.statistic)
    assert scores["chi2"].p_value == pytest.approx(chi.pvalue, rel=1e-9, abs=1e-300)
    assert scores["unseen_share"].value == 0.3
    shares = np.array([40, 30, 30]) / 100 - np.array([60, 30, 0]) / 90
    assert scores["share_change"].value == pytest.approx(np.abs(shares).max())
    assert scores["js"].value == pytest.approx(jensenshannon([60, 30, 0], [40, 30, 30], base=2))
    assert (scores["psi"].n_reference, scores["psi"].n_window) == (90, 100)


def test_categorical_edge_cases_are_defined() -> None:
    empty = categorical({})
    assert [s.value for s in empty.values()] == [0.0] * 5
    assert empty["chi2"].p_value == 1.0 and empty["chi2"].n_window == 0
    same = categorical({"a": 6, "b": 3, "zz": 1})
    assert same["psi"].value == pytest.approx(0.0, abs=1e-12)
    assert same["chi2"].p_value is not None and same["chi2"].p_value > 0.9
    assert chi_square([7], [3]) == (0.0, 1.0, 0)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        psi([1, 2], [2, 1], smoothing=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        chi_square([1, 2], [2, 1], smoothing=-1.0)
    with pytest.raises(ValueError, match="one length"):
        js_distance([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="nonnegative"):
        psi([1, -2], [2, 1])
    with pytest.raises(ValueError, match="edges need"):
        ks_from_histograms([0.0, 1.0], [1, 2], [2, 1])


def test_drift_score_is_frozen() -> None:
    score = DriftScore("psi", 0.1, None, None, 10, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.value = 0.2  # type: ignore[misc]
