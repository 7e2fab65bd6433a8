"""Online model performance from delayed labels, as additive per-window contributions.

Metrics are attributed to the window of the *prediction's* event time and change
as labels arrive, so each window stores sums that only ever add: the worker
writes a batch's contributions as rows and ClickHouse ``sum()`` /
``sumForEach()`` them; :meth:`from_columns` and ``metrics()`` turn the sums into
metrics here, and the same formulas work in SQL. A corrected label is the old
pair added with ``sign=-1`` and the new pair with ``sign=+1``. Every column is an
integer (counts, or fixed-point sums), so retractions cancel exactly.

- :class:`ClassificationCounts`: confusion matrix, log loss, ROC histograms,
  calibration bins.
- :class:`RegressionSums`: error and target sums for MAE, RMSE, MAPE, bias, R².
- :class:`DelayHistogram`: label delays on fixed log-spaced bins.
- :func:`coverage`: share of predictions with a label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftline.models.quality.classification import (
    FIXED_POINT_BITS,
    LOG_LOSS_CLIP,
    ClassificationCounts,
    binned_auc,
)
from driftline.models.quality.regression import (
    FRACTION_BITS,
    MAX_ABS_VALUE,
    RegressionSums,
    checked_sign,
)

__all__ = [
    "FIXED_POINT_BITS",
    "FRACTION_BITS",
    "LOG_LOSS_CLIP",
    "MAX_ABS_VALUE",
    "MAX_DELAY_SECONDS",
    "ClassificationCounts",
    "DelayHistogram",
    "RegressionSums",
    "binned_auc",
    "coverage",
]

MAX_DELAY_SECONDS = 30 * 86_400
"""Upper edge of the last regular delay bin (30 days)."""


def coverage(labeled: int, predicted: int) -> float | None:
    """Share of a window's predictions that got a label: ``labeled / predicted``.

    None when ``predicted`` is 0. Not clipped: above 1 means labels were counted
    for predictions the window did not count, a join bug worth seeing.

    Examples
    --------
    >>> coverage(30, 120), coverage(0, 0)
    (0.25, None)
    """
    if labeled < 0 or predicted < 0:
        raise ValueError(f"counts must be >= 0, got labeled={labeled}, predicted={predicted}")
    return labeled / predicted if predicted else None


class DelayHistogram:
    """Counts of label delays (label event time - prediction event time, seconds).

    ``n_bins`` log-spaced bins from 1 s to 30 days, plus an underflow bin
    ``[0, 1 s)`` first and an overflow bin ``>= 30 days`` last (``n_bins + 2``
    counts; bin ``i`` in ``1..n_bins`` is ``[edges[i-1], edges[i])``). Negative
    delays (clock skew) count in the underflow bin as 0 and in
    ``negative_count``, so skew stays visible.

    :meth:`quantiles` interpolates within the bin holding the rank (geometrically
    in log bins, linearly in the underflow bin), so it lies in the same bin as the
    exact (inverted-CDF) sample quantile: the error is within one bin's width,
    a factor ``(30 days / 1 s) ** (1 / n_bins)`` (1.16 for 100 bins); in the
    underflow bin within 1 s; in the overflow bin the result is 30 days, a lower
    bound.

    Examples
    --------
    >>> rng = np.random.default_rng(11)
    >>> delays = DelayHistogram().add(rng.lognormal(np.log(3_600), 1.0, size=5_000))
    >>> [round(q) for q in delays.quantiles([0.5, 0.9])]
    [3685, 12952]
    >>> delays.add(np.array([-2.0, 0.5])).to_columns()["delay_negative_count"]
    1
    """

    def __init__(self, n_bins: int = 100) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.edges = np.geomspace(1.0, MAX_DELAY_SECONDS, n_bins + 1)
        self.edges.setflags(write=False)
        self._reset()

    def _reset(self) -> None:
        self._counts: npt.NDArray[np.int64] = np.zeros(self.n_bins + 2, dtype=np.int64)
        self._negative = 0

    @property
    def count(self) -> int:
        """Number of delays (signed adds included)."""
        return int(self._counts.sum())

    def add(self, delays_seconds: npt.NDArray[np.float64], sign: int = 1) -> Self:
        """Add (``sign=1``) or retract (``sign=-1``) a batch of finite delays."""
        sign = checked_sign(sign)
        delays = np.asarray(delays_seconds, dtype=np.float64).ravel()
        if not np.all(np.isfinite(delays)):
            raise ValueError("delays must be finite")
        bins = np.searchsorted(self.edges, delays, side="right")
        self._counts += sign * np.bincount(bins, minlength=self.n_bins + 2)
        self._negative += sign * int(np.count_nonzero(delays < 0))
        return self

    def merge(self, other: DelayHistogram) -> Self:
        """Add ``other`` (same ``n_bins``) into this histogram."""
        if other.n_bins != self.n_bins:
            raise ValueError("cannot merge delay histograms with different bins")
        self._counts = self._counts + other._counts
        self._negative += other._negative
        return self

    def quantiles(self, levels: Sequence[float]) -> list[float | None]:
        """Delay quantiles in seconds at ``levels`` in [0, 1]; None for an empty histogram."""
        levels_array = np.asarray(levels, dtype=np.float64)
        if not np.all((levels_array >= 0.0) & (levels_array <= 1.0)):
            raise ValueError("levels must lie in [0, 1]")
        if np.any(self._counts < 0):
            raise ValueError("quantiles need non-negative counts (a retraction without its add?)")
        counts = self._counts
        total = int(counts.sum())
        if total == 0:
            return [None] * levels_array.size
        cumulative = np.cumsum(counts)
        ranks = levels_array * total
        first_nonempty = np.searchsorted(cumulative, 0, side="right")
        index = np.where(ranks > 0, np.searchsorted(cumulative, ranks), first_nonempty)
        fraction = np.clip((ranks - cumulative[index] + counts[index]) / counts[index], 0, 1)
        # The underflow bin [0, 1) is linear (below); its 1.0 here only avoids 0 ** 0.
        lower = np.concatenate([[1.0], self.edges])[index]
        upper = np.concatenate([self.edges, self.edges[-1:]])[index]
        values = np.where(index == 0, fraction, lower * (upper / lower) ** fraction)
        return [float(v) for v in values]

    def to_columns(self) -> dict[str, int | list[int]]:
        """``delay_counts``: ``n_bins + 2`` ints (Array(Int64), add with ``sumForEach``);
        ``delay_negative_count``: int (``sum``)."""
        return {"delay_counts": self._counts.tolist(), "delay_negative_count": self._negative}

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], n_bins: int = 100) -> Self:
        """Rebuild from :meth:`to_columns` output (or its SQL sums)."""
        histogram = cls(n_bins)
        counts = np.asarray(columns["delay_counts"], dtype=np.int64)
        if counts.shape != histogram._counts.shape:
            raise ValueError(f"delay_counts has {counts.size} values, expected {n_bins + 2}")
        histogram._counts = counts.copy()
        histogram._negative = int(columns["delay_negative_count"])
        return histogram
