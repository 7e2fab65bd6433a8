"""Drift scores of one closed window against its reference, from histograms on frozen edges.

The worker keeps no raw values. A window reports counts on the reference's coarse edges
(PSI, JS), on its fine percentile edges (KS, Wasserstein) and per category, and every score
here is computed from those counts alone. Where the score of the raw samples can differ
from the binned one, the difference is bounded and returned, so a histogram never claims
more drift than it can back up.

Defined results: when either side has no non-missing value, every score is 0.0, its error
bound 0.0 and its p-value 1.0 (no evidence of drift); :class:`DriftScore` carries both
counts so the rule engine's minimum-count gate skips it. Nothing returns NaN or inf for
nonnegative integer counts; a smoothing that is not positive, or histograms of different
lengths (a window not binned on its reference's edges), raise :class:`ValueError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import chdtrc, kolmogorov, rel_entr  # type: ignore[import-untyped]

from driftline.models.drift.reference import CategoricalReference, NumericReference

__all__ = [
    "CATEGORICAL_METRICS", "NUMERIC_METRICS", "ChiSquareResult", "DriftScore", "KSResult",
    "WassersteinResult", "categorical_scores", "chi_square", "js_distance",
    "ks_from_histograms", "numeric_scores", "psi", "unseen_share",
    "wasserstein_from_histograms",
]

_Floats = npt.NDArray[np.float64]
_Pieces = tuple[_Floats, _Floats, _Floats]
NUMERIC_METRICS = ("psi", "js", "wasserstein", "wasserstein_std", "ks")
CATEGORICAL_METRICS = ("psi", "js", "chi2", "unseen_share")


@dataclasses.dataclass(frozen=True)
class DriftScore:
    """One score of one feature in one window; ``metric`` is in ``*_METRICS``."""

    metric: str
    value: float
    p_value: float | None
    #: The raw samples' score lies within ``value ± error_bound`` (``ks``: within
    #: ``[value, value + error_bound]``); None: the score is defined on the bins.
    error_bound: float | None
    n_reference: int
    n_window: int


class KSResult(NamedTuple):
    statistic: float
    upper_bound: float
    p_value: float


class WassersteinResult(NamedTuple):
    distance: float
    error_bound: float


class ChiSquareResult(NamedTuple):
    statistic: float
    p_value: float
    dof: int


def _pair(ref_counts: npt.ArrayLike, win_counts: npt.ArrayLike) -> tuple[_Floats, _Floats]:
    ref = np.asarray(ref_counts, dtype=np.float64)
    win = np.asarray(win_counts, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != win.shape:
        raise ValueError(f"histograms must be 1-D of one length, got {ref.shape}, {win.shape}")
    if not (ref.min(initial=0.0) >= 0.0 and win.min(initial=0.0) >= 0.0):
        raise ValueError("counts must be nonnegative")
    return ref, win


def _layout(fine_edges: npt.ArrayLike, counts: _Floats) -> _Floats:
    edges = np.asarray(fine_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size + 1 != counts.size:
        raise ValueError(f"{edges.size} edges need {edges.size + 1} counts, got {counts.size}")
    return edges


def _check_smoothing(smoothing: float) -> None:
    if not 0.0 < smoothing < math.inf:
        raise ValueError(f"smoothing must be positive and finite, got {smoothing}")


def psi(ref_counts: npt.ArrayLike, win_counts: npt.ArrayLike, smoothing: float = 1e-4) -> float:
    """Population Stability Index of two histograms on the same bins.

    ``PSI = sum_i (q_i - p_i) ln(q_i / p_i)`` over the ``B`` bins, with smoothed shares
    ``p_i = (c_i / N + smoothing) / (1 + B * smoothing)``: ``smoothing`` is a share added to
    every bin before renormalising (Evidently uses 1e-4 on shares), so an empty bin gives a
    large but finite term. Every term is >= 0 and ``PSI <= 2 ln(1 + 1 / smoothing)``.
    Exact on the bins (no error bound); 0.0 when either side is empty.

    Examples
    --------
    >>> round(psi([50, 30, 20, 0], [20, 30, 40, 10]), 4)
    1.1038
    >>> psi([5, 5], [0, 0])
    0.0
    """
    ref, win = _pair(ref_counts, win_counts)
    _check_smoothing(smoothing)
    n_ref, n_win = ref.sum(), win.sum()
    if n_ref == 0 or n_win == 0:
        return 0.0
    p = (ref / n_ref + smoothing) / (1.0 + ref.size * smoothing)
    q = (win / n_win + smoothing) / (1.0 + win.size * smoothing)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref_counts: npt.ArrayLike, win_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two histograms on the same bins.

    ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with ``m = (p + q) / 2`` on the normalised
    counts, as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; needs no smoothing
    (``0 ln 0 = 0``). Exact on the bins; 0.0 when either side is empty.

    Examples
    --------
    >>> round(js_distance([50, 30, 20, 0], [20, 30, 40, 10]), 4)
    0.3499
    >>> js_distance([1, 0], [0, 1])
    1.0
    """
    ref, win = _pair(ref_counts, win_counts)
    n_ref, n_win = ref.sum(), win.sum()
    if n_ref == 0 or n_win == 0:
        return 0.0
    p, q = ref / n_ref, win / n_win
    m = (p + q) / 2.0
    divergence = (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / np.log(2.0)
    return float(np.sqrt(np.clip(divergence / 2.0, 0.0, 1.0)))


def ks_from_histograms(
    fine_edges: npt.ArrayLike, ref_fine_counts: npt.ArrayLike, win_fine_counts: npt.ArrayLike
) -> KSResult:
    """Two-sample Kolmogorov-Smirnov statistic from two histograms, with its error bound.

    With ``A_j``, ``B_j`` the shares of bins ``0..j`` (each empirical CDF just below edge
    ``j``) and ``a_j``, ``b_j`` the bin shares, ``statistic = max_j |A_j - B_j|``. The KS
    statistic ``D`` of the raw samples satisfies ``statistic <= D <= upper_bound``: each
    ``|A_j - B_j|`` is a left limit of ``|F_ref - F_win|``, so it is <= ``D``; and for
    ``x`` in bin ``j`` each CDF lies between its values at the bin's ends (it rises by at
    most its bin share), so with ``d = A_(j-1) - B_(j-1)``,
    ``d - b_j <= F_ref(x) - F_win(x) <= d + a_j``. Hence
    ``upper_bound = max_j max(d + a_j, b_j - d)``, capped at 1: attainable (one sample's bin
    mass at the bin's low end, the other's at its high end), and at most
    ``statistic + max_j max(a_j, b_j)``.

    ``p_value = kstwobign.sf(sqrt(n m / (n + m)) * statistic)``: Smirnov's limit law
    (``scipy.special.kolmogorov``, ~1 µs). scipy's ``ks_2samp(method="asymp")`` uses the
    finite-n ``kstwo`` instead, which takes up to a second at large n; for ``n m / (n + m)
    >= 8`` this p is never below it (up to 0.03 above near n ~ 100). From the lower bound
    of ``D``, the p-value is conservative toward "no drift". Tied data make KS p-values
    unreliable: score low-cardinality columns as categorical. Empty side:
    ``KSResult(0.0, 0.0, 1.0)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> edges = np.quantile(rng.normal(size=1000), np.linspace(0, 1, 21))
    >>> bins = lambda x: np.bincount(np.searchsorted(edges, x, side="right"), minlength=22)
    >>> a, b = rng.normal(size=500), rng.normal(0.3, size=400)
    >>> r = ks_from_histograms(edges, bins(a), bins(b))
    >>> [round(v, 4) for v in r]
    [0.0905, 0.148, 0.0525]
    >>> import scipy.stats
    >>> bool(r.statistic <= scipy.stats.ks_2samp(a, b).statistic <= r.upper_bound)
    True
    """
    ref, win = _pair(ref_fine_counts, win_fine_counts)
    _layout(fine_edges, ref)
    n, m = ref.sum(), win.sum()
    if n == 0 or m == 0:
        return KSResult(0.0, 0.0, 1.0)
    gap = np.cumsum(ref) / n - np.cumsum(win) / m  # A_j - B_j; the last is 0
    statistic = float(np.abs(gap[:-1]).max(initial=0.0))
    before = np.concatenate(([0.0], gap[:-1]))
    upper = float(np.maximum(before + ref / n, win / m - before).max())
    p_value = float(kolmogorov(math.sqrt(n * m / (n + m)) * statistic))
    return KSResult(statistic, min(max(upper, statistic), 1.0), p_value)


def _pieces(edges: _Floats, counts: _Floats, value_range: tuple[float, float]) -> _Pieces:
    """Cumulative shares, and where each bin's mass lies: the bin within the sample's range."""
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"a nonempty sample needs a finite (min, max), got {value_range}")
    bounds = np.clip(np.concatenate(([lo], edges, [hi])), lo, hi)
    cum = np.cumsum(counts)
    return cum / cum[-1], bounds[:-1], bounds[1:]  # cum[-1] / cum[-1] is exactly 1


def _quantiles(t0: _Floats, t1: _Floats, pieces: _Pieces) -> tuple[_Floats, _Floats]:
    """The interpolated quantile function just inside each interval ``(t0, t1)``."""
    cum, starts, ends = pieces
    j = np.searchsorted(cum, (t0 + t1) / 2.0)  # cum[j - 1] <= t0 < t1 <= cum[j]
    before = np.where(j > 0, cum[j - 1], 0.0)
    scale = (ends[j] - starts[j]) / (cum[j] - before)
    return starts[j] + (t0 - before) * scale, starts[j] + (t1 - before) * scale


def _abs_integral(d0: _Floats, d1: _Floats, dt: _Floats) -> float:
    """``∫ |d|`` of ``d`` linear from ``d0`` to ``d1`` on intervals of lengths ``dt``."""
    m0, m1 = np.abs(d0), np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 only where not selected
        crossing = (m0 * m0 + m1 * m1) / (2.0 * (m0 + m1))
    return float(dt @ np.where(d0 * d1 >= 0.0, (m0 + m1) / 2.0, crossing))


def wasserstein_from_histograms(
    fine_edges: npt.ArrayLike,
    ref_fine_counts: npt.ArrayLike,
    win_fine_counts: npt.ArrayLike,
    ref_range: tuple[float, float],
    win_range: tuple[float, float],
) -> WassersteinResult:
    """Wasserstein-1 distance of two histograms on the same edges, with its error bound.

    Each sample's mass is taken as uniform within each bin, clipped to the sample's own
    ``(min, max)`` range: the underflow bin spans ``[min, e_0]`` and the overflow bin
    ``[e_last, max]``. ``distance = ∫_0^1 |Q_ref(t) - Q_win(t)| dt`` of the two
    interpolated distributions' quantile functions, exactly (both are piecewise linear).

    Error bound: W1 is a metric, so the raw samples' W1 differs from ``distance`` by at
    most the W1 between each sample and its interpolation. Spreading a bin's mass
    uniformly over an interval of width ``w`` that holds it costs at most ``w / 2`` per
    unit of mass (``E|x - U| <= w / 2`` for ``x`` in the interval), so
    ``error_bound = sum_bins (a_j w_ref_j + b_j w_win_j) / 2``, with ``a_j``, ``b_j`` the bin
    shares and ``w_*_j`` the bin's width within each sample's range; this is at most
    ``sum_bins w_j max(a_j, b_j)`` over the shared range. Empty side:
    ``WassersteinResult(0.0, 0.0)``.

    Examples
    --------
    >>> r = wasserstein_from_histograms([0.0, 1.0, 2.0], [0, 4, 4, 0], [0, 0, 4, 4],
    ...                                 (0.0, 1.9), (1.1, 3.0))
    >>> round(r.distance, 6), round(r.error_bound, 6)
    (1.05, 0.95)
    """
    ref, win = _pair(ref_fine_counts, win_fine_counts)
    edges = _layout(fine_edges, ref)
    if ref.sum() == 0 or win.sum() == 0:
        return WassersteinResult(0.0, 0.0)
    ref_pieces, win_pieces = _pieces(edges, ref, ref_range), _pieces(edges, win, win_range)
    t = np.sort(np.concatenate(([0.0], ref_pieces[0], win_pieces[0])))
    t0, t1 = t[:-1], t[1:]
    t0, t1 = t0[t0 < t1], t1[t0 < t1]  # faster than np.unique
    (r0, r1), (w0, w1) = (_quantiles(t0, t1, p) for p in (ref_pieces, win_pieces))
    distance = _abs_integral(r0 - w0, r1 - w1, t1 - t0)
    spread = ref @ (ref_pieces[2] - ref_pieces[1]) / ref.sum()
    spread += win @ (win_pieces[2] - win_pieces[1]) / win.sum()
    return WassersteinResult(distance, float(spread) / 2.0)


def _in_scale_units(result: WassersteinResult, std: float, span: float) -> WassersteinResult:
    # A constant reference has std 0: fall back to the span of both samples (W1 and its
    # bound are <= span, so the value is in [0, 1]); a span of 0 means one shared constant.
    for scale in (std, span):
        if scale > 0.0:
            scaled = WassersteinResult(result.distance / scale, result.error_bound / scale)
            if math.isfinite(scaled.error_bound) and math.isfinite(scaled.distance):
                return scaled
    return WassersteinResult(0.0, 0.0)


def chi_square(
    ref_counts: npt.ArrayLike, win_counts: npt.ArrayLike, smoothing: float = 0.5
) -> ChiSquareResult:
    """Pearson chi-square goodness of fit of the window's counts to the reference's shares.

    Over ``K`` buckets (reference categories plus one rest bucket), the expected counts
    are ``e_i = N_win (r_i + smoothing) / (N_ref + K smoothing)``: ``smoothing``
    pseudo-counts in every reference bucket keep ``e_i > 0`` when a bucket is empty in the
    reference. ``statistic = sum (o_i - e_i)^2 / e_i``, ``dof = K - 1``, ``p_value =
    chi2.sf(statistic, dof)``: as ``scipy.stats.chisquare(o, e)``. Empty side or a single
    bucket: statistic 0.0, p-value 1.0. Large windows make any shift significant: alert
    on an effect size (PSI, JS) as well.

    Examples
    --------
    >>> r = chi_square([50, 30, 20, 0], [20, 30, 40, 10])
    >>> round(r.statistic, 2), f"{r.p_value:.2e}", r.dof
    (221.79, '8.25e-48', 3)
    """
    ref, win = _pair(ref_counts, win_counts)
    _check_smoothing(smoothing)
    n_ref, n_win = ref.sum(), win.sum()
    dof = max(ref.size - 1, 0)
    if n_ref == 0 or n_win == 0 or dof == 0:
        return ChiSquareResult(0.0, 1.0, dof)
    expected = n_win * (ref + smoothing) / (n_ref + ref.size * smoothing)
    statistic = float(np.sum((win - expected) ** 2 / expected))
    return ChiSquareResult(statistic, float(chdtrc(dof, statistic)), dof)


def unseen_share(
    window_counts: Mapping[str, int], reference: CategoricalReference, *, untracked: int = 0
) -> float:
    """Share of the window's non-missing values in categories the reference does not list.

    If the reference's ``other_count`` is 0 these categories are new; otherwise some may
    have been among the reference's 'other'. ``untracked`` values (past the window
    accumulator's ``max_tracked``) count as unseen, so the share is then an upper bound.
    0.0 for an empty window.

    Examples
    --------
    >>> ref = CategoricalReference(("a", "b"), (6, 3), other_count=1, count=10, missing_count=0)
    >>> unseen_share({"a": 5, "c": 2, "d": 1}, ref)
    0.375
    """
    listed = set(reference.categories)
    total = sum(window_counts.values()) + untracked
    unseen = sum(n for c, n in window_counts.items() if c not in listed) + untracked
    return unseen / total if total else 0.0


def numeric_scores(
    reference: NumericReference,
    window_coarse_counts: npt.ArrayLike,
    window_fine_counts: npt.ArrayLike,
    window_min: float,
    window_max: float,
    *,
    psi_smoothing: float = 1e-4,
) -> list[DriftScore]:
    """Scores :data:`NUMERIC_METRICS` of a numeric window binned on its reference's edges.

    PSI and JS on the coarse bins, KS (``error_bound = upper_bound - statistic``) and
    Wasserstein on the fine bins; ``wasserstein_std`` is the Wasserstein distance and its
    bound in units of the reference's std, or, when that std is 0 (a constant reference)
    or NaN, of the span ``max - min`` of both samples (the value is then in [0, 1]).
    ``window_min`` / ``window_max`` are the window's own, NaN for an empty window.

    Examples
    --------
    >>> ref = NumericReference(edges=(0.0, 1.0), counts=(0, 5, 0), fine_edges=(0.0, 0.5, 1.0),
    ...                        fine_counts=(0, 2, 3, 0), count=5, missing_count=0, mean=0.5,
    ...                        std=0.25, min=0.0, max=0.9, quantiles=(0.0,) * 7)
    >>> for s in numeric_scores(ref, [0, 3, 1], [0, 1, 2, 1], 0.1, 1.5):
    ...     print(s.metric, round(s.value, 4), s.p_value and round(s.p_value, 4), s.error_bound)
    psi 2.0274 None None
    js 0.3714 None None
    wasserstein 0.2425 None 0.4575
    wasserstein_std 0.97 None 1.83
    ks 0.25 0.9991 0.5
    """
    ref_coarse, win_coarse = _pair(reference.counts, window_coarse_counts)
    ref_fine, win_fine = _pair(reference.fine_counts, window_fine_counts)
    n_ref, n_win = int(ref_fine.sum()), int(win_fine.sum())
    ks = ks_from_histograms(reference.fine_edges, ref_fine, win_fine)
    w1 = wasserstein_from_histograms(reference.fine_edges, ref_fine, win_fine,
                                     (reference.min, reference.max), (window_min, window_max))
    span = float(np.fmax(reference.max, window_max) - np.fmin(reference.min, window_min))
    w1_std = _in_scale_units(w1, reference.std, span)
    return [
        DriftScore("psi", psi(ref_coarse, win_coarse, psi_smoothing), None, None, n_ref, n_win),
        DriftScore("js", js_distance(ref_coarse, win_coarse), None, None, n_ref, n_win),
        DriftScore("wasserstein", w1.distance, None, w1.error_bound, n_ref, n_win),
        DriftScore("wasserstein_std", w1_std.distance, None, w1_std.error_bound, n_ref, n_win),
        DriftScore("ks", ks.statistic, ks.p_value, ks.upper_bound - ks.statistic, n_ref, n_win),
    ]


def categorical_scores(
    reference: CategoricalReference,
    window_counts: Mapping[str, int],
    *,
    untracked: int = 0,
    psi_smoothing: float = 1e-4,
    chi_smoothing: float = 0.5,
) -> list[DriftScore]:
    """Scores :data:`CATEGORICAL_METRICS` of a categorical window against its reference.

    ``window_counts`` maps each category seen in the window to its count (missing values
    excluded); ``untracked`` counts values whose category the window did not keep. The
    buckets are the reference's categories plus one rest bucket (the reference's
    ``other_count``; every other window value), always ``K = len(categories) + 1``.

    Examples
    --------
    >>> ref = CategoricalReference(("a", "b"), (60, 30), other_count=10, count=100,
    ...                            missing_count=0)
    >>> for s in categorical_scores(ref, {"a": 40, "b": 30, "new": 30}):
    ...     print(s.metric, round(s.value, 4), s.p_value and f"{s.p_value:.1e}", s.n_window)
    psi 0.3006 None 100
    js 0.2286 None 100
    chi2 43.7938 3.1e-10 100
    unseen_share 0.3 None 100
    """
    listed = [window_counts.get(c, 0) for c in reference.categories]
    rest = sum(window_counts.values()) + untracked - sum(listed)
    ref, win = _pair((*reference.counts, reference.other_count), (*listed, rest))
    n_ref, n_win = int(ref.sum()), int(win.sum())
    chi = chi_square(ref, win, chi_smoothing)
    share = unseen_share(window_counts, reference, untracked=untracked)
    return [
        DriftScore("psi", psi(ref, win, psi_smoothing), None, None, n_ref, n_win),
        DriftScore("js", js_distance(ref, win), None, None, n_ref, n_win),
        DriftScore("chi2", chi.statistic, chi.p_value, None, n_ref, n_win),
        DriftScore("unseen_share", share, None, None, n_ref, n_win),
    ]
