"""Benjamini-Hochberg false discovery rate control across the tests of one window.

With hundreds of features, a per-feature test at level 0.05 flags several features in
every window by chance alone. Benjamini-Hochberg keeps the expected share of false
discoveries among the features flagged at most ``q`` (for independent or positively
dependent tests), without Bonferroni's loss of power.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["benjamini_hochberg", "bh_adjusted"]


def bh_adjusted(p_values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values, in the order given.

    The adjusted p-value of a test is the smallest ``q`` at which the step-up procedure
    rejects it: ``min over j >= rank of p_(j) * m / j``, capped at 1. The arithmetic is
    the same as :func:`scipy.stats.false_discovery_control` with ``method="bh"``, so
    both agree bit for bit.

    Parameters
    ----------
    p_values
        One-dimensional p-values in ``[0, 1]``; NaN is an error (drop untestable
        features before, so they do not count in ``m``).

    Examples
    --------
    >>> bh_adjusted([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    >>> bh_adjusted([]).tolist()
    []
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be one-dimensional, got shape {p.shape}")
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError("p-values must lie in [0, 1] (NaN is not a p-value)")
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m / np.arange(1, m + 1))
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.clip(adjusted_sorted, 0.0, 1.0)
    return adjusted


def benjamini_hochberg(
    p_values: Sequence[float] | npt.NDArray[np.float64], q: float
) -> npt.NDArray[np.bool_]:
    """Which tests the Benjamini-Hochberg step-up procedure rejects at FDR level ``q``.

    Test ``i`` is rejected exactly when its :func:`bh_adjusted` p-value is ``<= q``.

    Parameters
    ----------
    p_values
        One-dimensional p-values in ``[0, 1]``, one per feature of the window.
    q
        The false discovery rate to control, in ``(0, 1]``.

    Examples
    --------
    Four features tested in one window; 0.04 alone would pass a 0.05 test, but not
    after correcting for the four tests:

    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5], q=0.05).tolist()
    [True, False, False, False]
    >>> rng = np.random.default_rng(7)
    >>> int(benjamini_hochberg(rng.uniform(size=500), q=0.05).sum())
    0
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must lie in (0, 1], got {q!r}")
    return bh_adjusted(p_values) <= q
