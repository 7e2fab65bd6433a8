"""A mergeable quantile sketch with relative-error guarantees (DDSketch)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

__all__ = ["QuantileSketch"]

_Counts = npt.NDArray[np.int64]


def _add_counts(into: _Counts, counts: _Counts, offset: int, lo: int) -> None:
    """Add ``counts`` (keys from ``offset``) into ``into`` (keys from ``lo``), in place.

    Keys below ``lo`` are collapsed into bin 0; the caller guarantees no key is
    above ``lo + into.size - 1``.
    """
    start = offset - lo
    cut = min(max(0, -start), counts.size)
    if cut:
        into[0] += counts[:cut].sum()
    if cut < counts.size:
        into[start + cut : start + counts.size] += counts[cut:]


class _DenseStore:
    """Counts per integer key in a dense array; collapses its lowest keys."""

    def __init__(self, max_bins: int) -> None:
        self.max_bins = max_bins
        self.counts: _Counts = np.zeros(0, dtype=np.int64)
        self.offset = 0

    def add(self, keys: npt.NDArray[np.int64], counts: _Counts | None = None,
            lo: int | None = None, hi: int | None = None) -> None:
        """Count ``keys`` (each ``counts`` times if given); ``lo`` and ``hi``, when the
        caller knows them, are the smallest and largest key."""
        if keys.size == 0:
            return
        if lo is None or hi is None:
            lo, hi = int(keys.min()), int(keys.max())
        smallest = lo
        if self.counts.size:
            lo, hi = min(lo, self.offset), max(hi, self.offset + self.counts.size - 1)
        # Collapsing at hi - max_bins + 1 depends only on the overall key range,
        # so the store is the same whatever the batching or merge order.
        lo = max(lo, hi - self.max_bins + 1)
        span = hi - lo + 1
        idx = keys - lo
        if lo > smallest:  # the lowest keys collapse into bin 0
            idx = np.maximum(idx, 0)
        if counts is None:
            added = np.bincount(idx, minlength=span)
        else:
            added = np.zeros(span, dtype=np.int64)
            np.add.at(added, idx, counts)
        if self.counts.size:
            _add_counts(added, self.counts, self.offset, lo)
        self.counts = added
        self.offset = lo

    def merge(self, other: _DenseStore) -> None:
        keys = np.arange(other.offset, other.offset + other.counts.size, dtype=np.int64)
        self.add(keys, other.counts.copy())


class QuantileSketch:
    """DDSketch: quantiles of a stream within a relative accuracy, in bounded memory.

    Values are counted in logarithmic buckets ``(gamma**(k-1), gamma**k]`` with
    ``gamma = (1 + a) / (1 - a)``, one dense store for positive and one for
    negative values (keyed by magnitude), plus a count of zeros (``|x|`` below the
    smallest normal float times gamma). A store never holds more than
    ``max_bins`` buckets: beyond that its lowest-magnitude buckets are collapsed
    into one, which only degrades the quantiles that fall in them.

    The ``q`` quantile is the value of rank ``floor(q * (n - 1))`` (0-based) in
    sorted order, i.e. ``np.quantile(values, q, method="lower")``; the estimate
    is within relative error ``a`` of it (outside collapsed buckets), clamped
    to the exact minimum and maximum seen, and exact for ranks 0 and ``n - 1``.

    Parameters
    ----------
    relative_accuracy
        Relative accuracy ``a`` of the quantiles, in ``(0, 1)``.
    max_bins
        Maximum number of buckets per store (positive and negative).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(42)
    >>> values = rng.lognormal(mean=3.0, size=10_000)
    >>> sketch = QuantileSketch().update(values[:5_000])
    >>> sketch = sketch.merge(QuantileSketch().update(values[5_000:]))
    >>> sketch.count
    10000
    >>> sketch.quantiles([0.0, 0.5, 0.99, 1.0]).round(2).tolist()
    [0.25, 19.89, 210.64, 1125.32]
    >>> np.quantile(values, [0.0, 0.5, 0.99, 1.0], method="lower").round(2).tolist()
    [0.25, 19.82, 211.84, 1125.32]
    """

    def __init__(self, relative_accuracy: float = 0.01, max_bins: int = 2048) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {relative_accuracy}")
        if max_bins < 1:
            raise ValueError(f"max_bins must be >= 1, got {max_bins}")
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._ln_gamma = math.log(gamma)
        self._min_indexable = sys.float_info.min * gamma
        self._reset()

    def _reset(self) -> None:
        self._positive = _DenseStore(self.max_bins)
        self._negative = _DenseStore(self.max_bins)
        self._zero_count = 0
        self._min = math.nan
        self._max = math.nan

    @property
    def count(self) -> int:
        """Number of values added."""
        return (
            int(self._positive.counts.sum()) + int(self._negative.counts.sum()) + self._zero_count
        )

    def _keys(self, magnitudes: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        return np.ceil(np.log(magnitudes) / self._ln_gamma).astype(np.int64)

    def _values(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        with np.errstate(over="ignore"):  # the top bucket may round past float max
            lower = np.exp((keys - 1).astype(np.float64) * self._ln_gamma)
            return lower * (1.0 + self.relative_accuracy)

    def update(self, values: npt.NDArray[np.float64]) -> Self:
        """Add a batch of finite values; NaN or infinities raise ValueError."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return self
        if not np.isfinite(values).all():
            raise ValueError("QuantileSketch.update takes finite values only (no NaN or inf)")
        update_sorted_rows([self], np.sort(values)[np.newaxis],
                           np.array([values.size], dtype=np.int64))
        return self

    def merge(self, other: QuantileSketch) -> Self:
        """Add the counts of ``other`` (same relative accuracy) into this sketch.

        The result keeps this sketch's ``max_bins``.
        """
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "cannot merge quantile sketches with different relative accuracy: "
                f"{self.relative_accuracy} != {other.relative_accuracy}"
            )
        self._positive.merge(other._positive)
        self._negative.merge(other._negative)
        self._zero_count += other._zero_count
        self._min = float(np.fmin(self._min, other._min))
        self._max = float(np.fmax(self._max, other._max))
        return self

    def quantiles(self, levels: Sequence[float]) -> npt.NDArray[np.float64]:
        """Estimated quantiles at ``levels`` (each in [0, 1]); NaN when empty."""
        q = np.asarray(levels, dtype=np.float64)
        if np.any((q < 0.0) | (q > 1.0)) or np.any(np.isnan(q)):
            raise ValueError(f"quantile levels must be in [0, 1], got {levels!r}")
        n = self.count
        if n == 0:
            return np.full(q.shape, np.nan)
        neg, pos = self._negative, self._positive
        # Sorted order: negatives by decreasing magnitude, zeros, positives. Only the
        # buckets the ranks fall in are turned into values.
        counts = np.concatenate([neg.counts[::-1], [self._zero_count], pos.counts])
        ranks = np.floor((n - 1) * q)
        idx = np.searchsorted(np.cumsum(counts), ranks, side="right")
        zero_at = neg.counts.size
        estimates = np.zeros(q.shape)
        below, above = idx < zero_at, idx > zero_at
        estimates[below] = -self._values(neg.offset + (zero_at - 1 - idx[below]))
        estimates[above] = self._values(pos.offset + (idx[above] - zero_at - 1))
        estimates = np.clip(estimates, self._min, self._max)
        estimates[ranks == 0] = self._min  # the extremes are known exactly
        estimates[ranks == n - 1] = self._max
        return estimates

    def count_above(self, x: float) -> int:
        """How many values are certainly greater than ``x > 0``: those of the buckets above
        the one ``x`` falls in (values in its own bucket are not counted, so this errs low
        by at most that bucket's count).

        >>> QuantileSketch().update(np.array([1.0, 2.0, 3.0, 10.0, 20.0])).count_above(2.5)
        3
        """
        if not x > 0:
            raise ValueError(f"count_above needs a positive value, got {x}")
        store = self._positive
        key = int(np.ceil(math.log(max(x, self._min_indexable)) / self._ln_gamma))
        first = max(0, key + 1 - store.offset)
        return int(store.counts[first:].sum())

    def to_state(self) -> dict[str, Any]:
        """Plain state (ints, floats, None, int64 arrays) for JSON or pickle."""
        empty = self.count == 0
        return {
            "relative_accuracy": self.relative_accuracy,
            "max_bins": self.max_bins,
            "zero_count": self._zero_count,
            "min": None if empty else self._min,
            "max": None if empty else self._max,
            "positive_offset": self._positive.offset,
            "positive_counts": self._positive.counts.copy(),
            "negative_offset": self._negative.offset,
            "negative_counts": self._negative.counts.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild a sketch from :meth:`to_state` output (possibly JSON-decoded)."""
        sketch = cls(float(state["relative_accuracy"]), int(state["max_bins"]))
        sketch._zero_count = int(state["zero_count"])
        sketch._min = math.nan if state["min"] is None else float(state["min"])
        sketch._max = math.nan if state["max"] is None else float(state["max"])
        for store, prefix in ((sketch._positive, "positive"), (sketch._negative, "negative")):
            store.offset = int(state[f"{prefix}_offset"])
            store.counts = np.array(state[f"{prefix}_counts"], dtype=np.int64)
        return sketch


def update_sorted_rows(sketches: Sequence[QuantileSketch], rows: npt.NDArray[np.float64],
                       present: npt.NDArray[np.int64]) -> None:
    """Add the first ``present[i]`` values of ``rows[i]`` (ascending, finite) to
    ``sketches[i]``: the bucket keys of every row in one pass, for sketches of one
    relative accuracy (what follows them is ignored).

    The same as ``sketches[i].update(rows[i, :present[i]])`` for each row.
    """
    if not sketches:
        return
    first = sketches[0]
    if any(s.relative_accuracy != first.relative_accuracy for s in sketches):
        raise ValueError("update_sorted_rows needs sketches of one relative accuracy")
    n = rows.shape[1]
    valid = np.arange(n) < present[:, np.newaxis]
    magnitudes = np.abs(rows)
    indexable = valid & (magnitudes >= first._min_indexable)
    positive = indexable & (rows > 0)
    negative = indexable & (rows < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        keys = np.ceil(np.log(np.where(indexable, magnitudes, 1.0)) / first._ln_gamma
                       ).astype(np.int64)
    n_positive, n_negative = positive.sum(axis=1), negative.sum(axis=1)
    zeros = present - n_positive - n_negative
    for i, sketch in enumerate(sketches):
        p = int(present[i])
        if not p:
            continue
        row_keys = keys[i]
        # Rows are ascending: positive keys ascend, negative keys (magnitudes) descend.
        if n_negative[i]:
            negative_keys = row_keys[negative[i]]
            sketch._negative.add(negative_keys, lo=int(negative_keys[-1]),
                                 hi=int(negative_keys[0]))
        if n_positive[i]:
            positive_keys = row_keys[positive[i]]
            sketch._positive.add(positive_keys, lo=int(positive_keys[0]),
                                 hi=int(positive_keys[-1]))
        sketch._zero_count += int(zeros[i])
        low, high = float(rows[i, 0]), float(rows[i, p - 1])
        sketch._min = low if not sketch._min <= low else sketch._min
        sketch._max = high if not sketch._max >= high else sketch._max
