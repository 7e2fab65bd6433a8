"""Drift scores of all the numeric features of one window at once.

:func:`numeric_scores_many` gives, feature by feature, exactly what
:func:`~driftline.models.drift.scores.numeric_scores` gives, but computes PSI, JS and KS
for every feature whose histograms have the same bin counts as one matrix: a window
closes with one score per metric per feature, and a numpy call costs about a microsecond
whatever its size, so per-feature calls dominated the closing of small windows.
Wasserstein stays per feature (its integration grid differs from feature to feature).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import kolmogorov, rel_entr  # type: ignore[import-untyped]

from driftline.models.drift.reference import NumericReference
from driftline.models.drift.scores import (
    DriftScore,
    _in_scale_units,
    numeric_scores,
    wasserstein_from_histograms,
)

_Floats = npt.NDArray[np.float64]


class NumericWindow(NamedTuple):
    """What a numeric feature's window contributes to its scores."""

    coarse_counts: Sequence[int]
    fine_counts: Sequence[int]
    min: float
    max: float


def numeric_scores_many(references: Sequence[NumericReference],
                        windows: Sequence[NumericWindow], *,
                        psi_smoothing: float = 1e-4) -> list[list[DriftScore]]:
    """``numeric_scores(references[i], *windows[i])`` for every ``i``, equal to it.

    >>> ref = NumericReference(edges=(0.0, 1.0), counts=(0, 5, 0), fine_edges=(0.0, 0.5, 1.0),
    ...                        fine_counts=(0, 2, 3, 0), count=5, missing_count=0, mean=0.5,
    ...                        std=0.25, min=0.0, max=0.9, quantiles=(0.0,) * 7)
    >>> window = NumericWindow((0, 3, 1), (0, 1, 2, 1), 0.1, 1.5)
    >>> numeric_scores_many([ref, ref], [window, window])[1] == numeric_scores(ref, *window)
    True
    """
    if len(references) != len(windows):
        raise ValueError(f"{len(references)} references for {len(windows)} windows")
    out: list[list[DriftScore]] = [[] for _ in windows]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (ref, win) in enumerate(zip(references, windows, strict=True)):
        shape = (len(ref.counts), len(ref.fine_counts))
        if shape != (len(win.coarse_counts), len(win.fine_counts)) or 0 in shape:
            out[i] = numeric_scores(ref, *win, psi_smoothing=psi_smoothing)  # its errors
        else:
            groups.setdefault(shape, []).append(i)
    for members in groups.values():
        refs = [references[i] for i in members]
        wins = [windows[i] for i in members]
        ref_coarse = np.array([r.counts for r in refs], dtype=np.float64)
        win_coarse = np.array([w.coarse_counts for w in wins], dtype=np.float64)
        ref_fine = np.array([r.fine_counts for r in refs], dtype=np.float64)
        win_fine = np.array([w.fine_counts for w in wins], dtype=np.float64)
        if min(ref_coarse.min(), win_coarse.min(), ref_fine.min(), win_fine.min()) < 0.0:
            raise ValueError("counts must be nonnegative")
        psis = _psi_rows(ref_coarse, win_coarse, psi_smoothing)
        jss = _js_rows(ref_coarse, win_coarse)
        ks, upper, p_values = _ks_rows(ref_fine, win_fine)
        n_refs, n_wins = ref_fine.sum(axis=1), win_fine.sum(axis=1)
        for k, i in enumerate(members):
            ref, win = references[i], windows[i]
            n_ref, n_win = int(n_refs[k]), int(n_wins[k])
            w1 = wasserstein_from_histograms(ref.fine_edges, ref_fine[k], win_fine[k],
                                             (ref.min, ref.max), (win.min, win.max))
            span = float(np.fmax(ref.max, win.max) - np.fmin(ref.min, win.min))
            w1_std = _in_scale_units(w1, ref.std, span)
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


def _totals(ref: _Floats, win: _Floats) -> tuple[_Floats, _Floats, npt.NDArray[np.bool_]]:
    """Row totals, with 1 where a side is empty (those rows score 0), and which rows."""
    n_ref, n_win = ref.sum(axis=1), win.sum(axis=1)
    empty = (n_ref == 0) | (n_win == 0)
    return np.where(empty, 1.0, n_ref), np.where(empty, 1.0, n_win), empty


def _psi_rows(ref: _Floats, win: _Floats, smoothing: float) -> _Floats:
    if not 0.0 < smoothing < math.inf:
        raise ValueError(f"smoothing must be positive and finite, got {smoothing}")
    n_ref, n_win, empty = _totals(ref, win)
    bins = ref.shape[1]
    p = (ref / n_ref[:, np.newaxis] + smoothing) / (1.0 + bins * smoothing)
    q = (win / n_win[:, np.newaxis] + smoothing) / (1.0 + bins * smoothing)
    return np.where(empty, 0.0, np.sum((q - p) * np.log(q / p), axis=1))


def _js_rows(ref: _Floats, win: _Floats) -> _Floats:
    n_ref, n_win, empty = _totals(ref, win)
    p, q = ref / n_ref[:, np.newaxis], win / n_win[:, np.newaxis]
    m = (p + q) / 2.0
    divergence = (np.sum(rel_entr(p, m), axis=1) + np.sum(rel_entr(q, m), axis=1)) / np.log(2.0)
    return np.where(empty, 0.0, np.sqrt(np.clip(divergence / 2.0, 0.0, 1.0)))


def _ks_rows(ref: _Floats, win: _Floats) -> tuple[_Floats, _Floats, _Floats]:
    """Statistic, upper bound and p-value per row, as ``ks_from_histograms``."""
    n, m, empty = _totals(ref, win)
    gap = np.cumsum(ref, axis=1) / n[:, np.newaxis] - np.cumsum(win, axis=1) / m[:, np.newaxis]
    statistic = np.abs(gap[:, :-1]).max(axis=1, initial=0.0)
    before = np.concatenate((np.zeros((gap.shape[0], 1)), gap[:, :-1]), axis=1)
    upper = np.maximum(before + ref / n[:, np.newaxis], win / m[:, np.newaxis] - before).max(1)
    p_value = kolmogorov(np.sqrt(n * m / (n + m)) * statistic)
    upper = np.minimum(np.maximum(upper, statistic), 1.0)
    return (np.where(empty, 0.0, statistic), np.where(empty, 0.0, upper),
            np.where(empty, 1.0, p_value))
