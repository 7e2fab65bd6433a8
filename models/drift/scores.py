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
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import chdtrc  # type: ignore[import-untyped]

from driftline.models.drift.distances import (
    Floats,
    WassersteinResult,
    as_edges,
    as_pair,
    check_smoothing,
    in_scale_units,
    js_rows,
    ks_rows,
    psi_rows,
    wasserstein_from_histograms,
)
from driftline.models.drift.reference import CategoricalReference, NumericReference

__all__ = [
    "CATEGORICAL_METRICS", "NUMERIC_METRICS", "ChiSquareResult", "DriftScore", "KSResult",
    "NumericWindow", "WassersteinResult", "categorical_scores", "chi_square", "js_distance",
    "ks_from_histograms", "numeric_scores", "numeric_scores_many", "psi", "unseen_share",
    "wasserstein_from_histograms",
]

NUMERIC_METRICS = ("psi", "js", "wasserstein", "wasserstein_std", "ks")
CATEGORICAL_METRICS = ("psi", "js", "chi2", "unseen_share", "share_change")


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


class ChiSquareResult(NamedTuple):
    statistic: float
    p_value: float
    dof: int


def _one_pair(ref_counts: npt.ArrayLike, win_counts: npt.ArrayLike) -> tuple[Floats, Floats]:
    ref, win = as_pair(ref_counts, win_counts)
    return ref[np.newaxis], win[np.newaxis]


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
    ref, win = _one_pair(ref_counts, win_counts)
    return float(psi_rows(ref, win, smoothing)[0])


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
    ref, win = _one_pair(ref_counts, win_counts)
    return float(js_rows(ref, win)[0])


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
    ref, win = _one_pair(ref_fine_counts, win_fine_counts)
    as_edges(fine_edges, ref)
    statistic, upper, p_value = ks_rows(ref, win)
    return KSResult(float(statistic[0]), float(upper[0]), float(p_value[0]))


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
    ref, win = as_pair(ref_counts, win_counts)
    check_smoothing(smoothing)
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
    """Share of the window's non-missing values in categories the reference has not seen.

    Seen: the reference's top categories and those of its rest (``reference.rest``, which
    names up to :data:`~driftline.models.drift.reference.MAX_REST_CATEGORIES`), so a
    long-tailed feature's tail values are not new. Past that many, or for a reference
    that names no rest, values of its rest count as unseen, and so do ``untracked``
    values (past the window accumulator's ``max_tracked``): the share is then an upper
    bound. 0.0 for an empty window.

    Examples
    --------
    >>> ref = CategoricalReference(("a", "b"), (6, 3), other_count=1, count=10, missing_count=0,
    ...                            rest=("c",))
    >>> unseen_share({"a": 5, "c": 2, "d": 1}, ref)
    0.125
    """
    seen = reference.seen
    total = sum(window_counts.values()) + untracked
    unseen = sum(n for c, n in window_counts.items() if c not in seen) + untracked
    return unseen / total if total else 0.0


class NumericWindow(NamedTuple):
    """What a numeric feature's window contributes to its scores."""

    coarse_counts: Sequence[int]
    fine_counts: Sequence[int]
    #: The window's own range; NaN for an empty window.
    min: float
    max: float


def numeric_scores(
    reference: NumericReference,
    window_coarse_counts: Sequence[int],
    window_fine_counts: Sequence[int],
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
    ``window_min`` / ``window_max`` are the window's own, NaN for an empty window. The
    one-feature case of :func:`numeric_scores_many`.

    Examples
    --------
    >>> ref = NumericReference(edges=(0.0, 1.0), counts=(0, 5, 0), fine_edges=(0.0, 0.5, 1.0),
    ...                        fine_counts=(0, 2, 3, 0), count=5, missing_count=0, mean=0.5,
    ...                        std=0.25, min=0.0, max=0.9, quantiles=(0.0,) * 7)
    >>> for s in numeric_scores(ref, [0, 3, 1], [0, 1, 2, 1], 0.1, 1.5):
    ...     print(s.metric, round(s.value, 4), s.p_value and round(s.p_value, 4), s.error_bound)
    psi 2.0274 None None
    js 0.3714 None None
    wasserstein 0.2 None 0.5
    wasserstein_std 0.8 None 2.0
    ks 0.25 0.9991 0.5
    """
    window = NumericWindow(window_coarse_counts, window_fine_counts, window_min, window_max)
    return numeric_scores_many([reference], [window], psi_smoothing=psi_smoothing)[0]


def numeric_scores_many(references: Sequence[NumericReference],
                        windows: Sequence[NumericWindow], *,
                        psi_smoothing: float = 1e-4) -> list[list[DriftScore]]:
    """:func:`numeric_scores` of ``references[i]`` and ``windows[i]`` for every ``i``.

    A window closes with one score per metric per feature: PSI, JS and KS of all the
    features whose histograms have the same numbers of bins are one matrix each, a row
    per feature. Wasserstein stays per feature.
    """
    if len(references) != len(windows):
        raise ValueError(f"{len(references)} references for {len(windows)} windows")
    check_smoothing(psi_smoothing)
    out: list[list[DriftScore]] = [[] for _ in windows]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (ref, win) in enumerate(zip(references, windows, strict=True)):
        shape = (len(ref.counts), len(ref.fine_counts))
        if shape != (len(win.coarse_counts), len(win.fine_counts)):
            as_pair(ref.counts, win.coarse_counts)  # raises, saying which lengths differ
            as_pair(ref.fine_counts, win.fine_counts)
        if len(ref.fine_edges) + 1 != shape[1]:
            as_edges(ref.fine_edges, np.asarray(ref.fine_counts))  # raises
        groups.setdefault(shape, []).append(i)
    for members in groups.values():
        refs = [references[i] for i in members]
        wins = [windows[i] for i in members]
        ref_coarse = np.array([r.counts for r in refs], dtype=np.float64)
        win_coarse = np.array([w.coarse_counts for w in wins], dtype=np.float64)
        ref_fine = np.array([r.fine_counts for r in refs], dtype=np.float64)
        win_fine = np.array([w.fine_counts for w in wins], dtype=np.float64)
        if min(ref_coarse.min(initial=0.0), win_coarse.min(initial=0.0),
               ref_fine.min(initial=0.0), win_fine.min(initial=0.0)) < 0.0:
            raise ValueError("counts must be nonnegative")
        psis = psi_rows(ref_coarse, win_coarse, psi_smoothing)
        jss = js_rows(ref_coarse, win_coarse)
        ks, upper, p_values = ks_rows(ref_fine, win_fine)
        n_refs, n_wins = ref_fine.sum(axis=1), win_fine.sum(axis=1)
        for k, i in enumerate(members):
            ref, win = references[i], windows[i]
            n_ref, n_win = int(n_refs[k]), int(n_wins[k])
            w1 = wasserstein_from_histograms(ref.fine_edges, ref_fine[k], win_fine[k],
                                             (ref.min, ref.max), (win.min, win.max))
            span = float(np.fmax(ref.max, win.max) - np.fmin(ref.min, win.min))
            w1_std = in_scale_units(w1, ref.std, span)
            out[i] = [
                DriftScore("psi", float(psis[k]), None, None, n_ref, n_win),
                DriftScore("js", float(jss[k]), None, None, n_ref, n_win),
                DriftScore("wasserstein", w1.distance, None, w1.error_bound, n_ref, n_win),
                DriftScore("wasserstein_std", w1_std.distance, None, w1_std.error_bound,
                           n_ref, n_win),
                DriftScore("ks", float(ks[k]), float(p_values[k]), float(upper[k] - ks[k]),
                           n_ref, n_win),
            ]
    return out


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
    ``share_change`` is the largest absolute change of a bucket's share (0.68 -> 0.755 of
    a class: 0.075), the effect measure that fits a share where PSI reads small (0.028
    there); 0.0 when either side is empty.

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
    share_change 0.2 None 100
    """
    listed = [window_counts.get(c, 0) for c in reference.categories]
    rest = sum(window_counts.values()) + untracked - sum(listed)
    ref, win = as_pair((*reference.counts, reference.other_count), (*listed, rest))
    n_ref, n_win = int(ref.sum()), int(win.sum())
    chi = chi_square(ref, win, chi_smoothing)
    share = unseen_share(window_counts, reference, untracked=untracked)
    return [
        DriftScore("psi", psi(ref, win, psi_smoothing), None, None, n_ref, n_win),
        DriftScore("js", js_distance(ref, win), None, None, n_ref, n_win),
        DriftScore("chi2", chi.statistic, chi.p_value, None, n_ref, n_win),
        DriftScore("unseen_share", share, None, None, n_ref, n_win),
        DriftScore("share_change", _largest_share_change(ref, win), None, None, n_ref, n_win),
    ]


def _largest_share_change(ref: Floats, win: Floats) -> float:
    n_ref, n_win = ref.sum(), win.sum()
    if n_ref == 0 or n_win == 0:
        return 0.0
    return float(np.abs(win / n_win - ref / n_ref).max())
