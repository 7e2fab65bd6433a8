"""Mergeable per-window, per-feature accumulators (numpy only)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from driftline.models.windows.sketch import QuantileSketch, update_sorted_rows

__all__ = ["CategoricalAccumulator", "NumericAccumulator", "NumericSummary", "edges_from_sample",
           "update_rows"]

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]


def _nullable(x: float) -> float | None:
    """Non-finite floats become None, so the state is strict JSON."""
    return x if math.isfinite(x) else None


def _float(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    out = array.copy()
    out.setflags(write=False)
    return out


def edges_from_sample(values: npt.NDArray[np.float64], n_bins: int) -> _Floats:
    """Frozen equal-frequency bin edges from a reference sample.

    The edges are the ``0, 1/n_bins, ..., 1`` quantiles of the finite values,
    deduplicated, with the last edge moved to the next float above the sample
    maximum. Quantiles use ``method="lower"`` (as :class:`QuantileSketch`): edges
    are sample values, so discrete data gets edges at its own values and no
    interpolation between huge values can overflow. With the layout of
    :class:`NumericAccumulator`, the underflow bin then holds values below the
    reference minimum, the overflow bin values above the reference maximum, and
    every reference value lies in a regular bin.

    A constant sample ``v`` gives ``[v, nextafter(v, inf)]``: one bin holding
    exactly ``v``, so any other value shows up as under/overflow (a sample of
    only the largest float gives ``[nextafter(v, -inf), v]``). The result is
    strictly increasing, finite, and has at least 2 edges.

    Examples
    --------
    >>> edges_from_sample(np.arange(10.0), n_bins=3).tolist()
    [0.0, 3.0, 6.0, 9.000000000000002]
    >>> edges_from_sample(np.array([1.0, 2.0, 2.0, 2.0, 2.0, 4.0]), n_bins=4).tolist()
    [1.0, 2.0, 4.000000000000001]
    >>> edges_from_sample(np.array([5.0, 5.0]), n_bins=10).tolist()
    [5.0, 5.000000000000001]
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    sample = np.asarray(values, dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise ValueError("edges_from_sample needs at least one finite value")
    cuts = np.quantile(sample, np.linspace(0.0, 1.0, n_bins + 1), method="lower")
    with np.errstate(over="ignore"):
        top = np.nextafter(cuts[-1], np.inf)
    if np.isfinite(top):
        cuts[-1] = top
    elif cuts[0] == cuts[-1]:  # constant sample at the largest float
        cuts[0] = np.nextafter(cuts[0], -np.inf)
    return np.unique(cuts)


def _checked_edges(edges: npt.NDArray[np.float64]) -> _Floats:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or not np.all(np.isfinite(edges)):
        raise ValueError("edges must be a 1-D array of finite values")
    if np.any(edges[1:] <= edges[:-1]):
        raise ValueError("edges must be strictly increasing")
    return edges


def sorted_histogram(ascending: _Floats, edges: _Floats) -> _Ints:
    """Counts of ``np.searchsorted(edges, x, side="right")`` over sorted values: a search of
    the few edges in the many values, ~10x faster than binning each value (with the sort).

    >>> sorted_histogram(np.array([0.5, 1.0, 1.0, 2.5, 9.0]), np.array([1.0, 2.0, 3.0]))
    array([1, 2, 1, 1])
    """
    below = np.searchsorted(ascending, edges, side="left")  # values < each edge
    return np.diff(below, prepend=0, append=ascending.size).astype(np.int64)


def _histogram(edges: _Floats, values: _Floats) -> _Ints:
    return sorted_histogram(np.sort(values), edges)


@dataclass(frozen=True, eq=False)
class NumericSummary:
    """Read-only summary of a :class:`NumericAccumulator`.

    ``mean``, ``variance`` (population), ``min``, ``max`` and ``quantiles`` are
    over the non-missing values and NaN when there are none. The arrays are
    read-only; summaries compare by identity (``eq=False``: they hold arrays).
    """

    count: int
    missing_count: int
    mean: float
    variance: float
    min: float
    max: float
    quantiles: _Floats
    bin_counts: _Ints
    fine_bin_counts: _Ints


class NumericAccumulator:
    """Counts, moments, extremes, quantile sketch and histogram of a numeric feature.

    NaN and infinite values count as missing (an infinity would poison the
    moments and has no sketch bucket). Moments are combined with Chan et al.'s
    parallel algorithm (n, mean, M2), so any batching or merge order gives the
    same result up to rounding.

    ``bin_counts`` has ``len(edges) + 1`` bins, from
    ``np.searchsorted(edges, x, side="right")``: bin 0 is the underflow
    ``x < edges[0]``, bin ``i`` holds ``edges[i-1] <= x < edges[i]``, and the last
    bin is the overflow ``x >= edges[-1]``.

    A second histogram on ``fine_edges`` (a reference's percentiles) has the same
    layout; KS and Wasserstein distances are computed on it.

    Parameters
    ----------
    edges
        Frozen bin edges: finite and strictly increasing (see :func:`edges_from_sample`).
        May be empty (a single bin counts everything) until :meth:`set_edges`.
    relative_accuracy
        Relative accuracy of the quantile sketch.
    fine_edges
        Edges of the fine histogram, same rules; empty by default.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> acc = NumericAccumulator(np.array([-1.0, 0.0, 1.0]))
    >>> acc = acc.update(np.array([np.nan, 0.5, -3.0]))
    >>> acc = acc.merge(NumericAccumulator(acc.edges).update(rng.normal(size=1_000)))
    >>> s = acc.summary([0.5, 0.9])
    >>> s.count, s.missing_count, round(s.mean, 4), round(s.variance, 4)
    (1003, 1, -0.0746, 0.8932)
    >>> s.quantiles.round(3), s.bin_counts
    (array([-0.069,  1.139]), array([163, 389, 320, 130]))
    """

    def __init__(self, edges: npt.NDArray[np.float64], relative_accuracy: float = 0.01,
                 fine_edges: npt.NDArray[np.float64] | None = None) -> None:
        self.edges = _frozen(_checked_edges(edges))
        self.relative_accuracy = relative_accuracy
        fine = np.empty(0) if fine_edges is None else fine_edges
        self.fine_edges = _frozen(_checked_edges(fine))
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._missing_count = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = math.nan
        self._max = math.nan
        self._sketch = QuantileSketch(self.relative_accuracy)
        self._bin_counts: _Ints = np.zeros(self.edges.size + 1, dtype=np.int64)
        self._fine_bin_counts: _Ints = np.zeros(self.fine_edges.size + 1, dtype=np.int64)

    @property
    def count(self) -> int:
        """Number of values seen, missing ones included."""
        return self._count

    @property
    def missing_count(self) -> int:
        """Number of NaN or infinite values seen."""
        return self._missing_count

    def _combine(self, n: int, mean: float, m2: float) -> None:
        # Chan et al.: merging (n, mean, M2) needs no sums of squares, so no cancellation.
        n_a = self._count - self._missing_count
        total = n_a + n
        delta = mean - self._mean
        self._mean += delta * n / total
        self._m2 += m2 + delta * delta * n_a * n / total

    def update(self, values: npt.NDArray[np.float64]) -> Self:
        """Add a batch of values; NaN (and +-inf) mean missing."""
        update_rows([self], np.asarray(values, dtype=np.float64).reshape(1, -1))
        return self

    def set_edges(self, edges: npt.NDArray[np.float64], values: npt.NDArray[np.float64],
                  fine_edges: npt.NDArray[np.float64] | None = None) -> Self:
        """Freeze the edges of an accumulator built without any, binning ``values``.

        ``values`` must hold the non-missing values already added (in any order);
        this lets a window start before its reference sample has fixed the edges.
        """
        if self.edges.size:
            raise ValueError("edges are already set")
        edges = _checked_edges(edges)
        values = np.asarray(values, dtype=np.float64).ravel()
        present = values[np.isfinite(values)]
        if present.size != self._count - self._missing_count:
            raise ValueError(
                f"set_edges got {present.size} finite values, "
                f"but {self._count - self._missing_count} were added"
            )
        self.edges = _frozen(edges)
        self._bin_counts = _histogram(edges, present)
        if fine_edges is not None:
            self.fine_edges = _frozen(_checked_edges(fine_edges))
            self._fine_bin_counts = _histogram(self.fine_edges, present)
        return self

    def merge(self, other: NumericAccumulator) -> Self:
        """Add ``other`` (same edges) into this accumulator."""
        if not (np.array_equal(self.edges, other.edges)
                and np.array_equal(self.fine_edges, other.fine_edges)):
            raise ValueError("cannot merge numeric accumulators with different bin edges")
        n = other._count - other._missing_count
        if n:
            with np.errstate(over="ignore", invalid="ignore"):
                self._combine(n, other._mean, other._m2)
        self._count += other._count
        self._missing_count += other._missing_count
        self._min = float(np.fmin(self._min, other._min))
        self._max = float(np.fmax(self._max, other._max))
        self._sketch.merge(other._sketch)
        self._bin_counts = self._bin_counts + other._bin_counts
        self._fine_bin_counts = self._fine_bin_counts + other._fine_bin_counts
        return self

    def summary(self, levels: Sequence[float]) -> NumericSummary:
        """Summary with the sketch quantiles at ``levels``."""
        n = self._count - self._missing_count
        return NumericSummary(
            count=self._count,
            missing_count=self._missing_count,
            mean=self._mean if n else math.nan,
            variance=self._m2 / n if n else math.nan,
            min=self._min,
            max=self._max,
            quantiles=_frozen(self._sketch.quantiles(levels)),
            bin_counts=_frozen(self._bin_counts),
            fine_bin_counts=_frozen(self._fine_bin_counts),
        )

    def to_state(self) -> dict[str, Any]:
        """Plain state for JSON or pickle; non-finite floats are stored as None."""
        return {
            "edges": self.edges.copy(),
            "relative_accuracy": self.relative_accuracy,
            "count": self._count,
            "missing_count": self._missing_count,
            "mean": _nullable(self._mean),
            "m2": _nullable(self._m2),
            "min": _nullable(self._min),
            "max": _nullable(self._max),
            "sketch": self._sketch.to_state(),
            "bin_counts": self._bin_counts.copy(),
            "fine_edges": self.fine_edges.copy(),
            "fine_bin_counts": self._fine_bin_counts.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an accumulator from :meth:`to_state` output (possibly JSON-decoded)."""
        acc = cls(np.array(state["edges"], dtype=np.float64), float(state["relative_accuracy"]),
                  np.array(state.get("fine_edges", []), dtype=np.float64))
        acc._count = int(state["count"])
        acc._missing_count = int(state["missing_count"])
        acc._mean = _float(state["mean"])
        acc._m2 = _float(state["m2"])
        acc._min = _float(state["min"])
        acc._max = _float(state["max"])
        acc._sketch = QuantileSketch.from_state(state["sketch"])
        acc._bin_counts = np.array(state["bin_counts"], dtype=np.int64)
        acc._fine_bin_counts = np.array(
            state.get("fine_bin_counts", [0] * (acc.fine_edges.size + 1)), dtype=np.int64)
        return acc


def update_rows(accumulators: Sequence[NumericAccumulator],
                values: npt.NDArray[np.float64]) -> None:
    """Add row ``i`` of ``values`` (features × events) to ``accumulators[i]``.

    One sort, one pass of moments and one of sketch keys for all the rows, then a few
    small steps per accumulator: a window's numeric features are updated together,
    not one by one (each numpy call costs about a microsecond whatever its size).
    ``update(values)`` is this with one row, so both give the same result.
    """
    rows, n = values.shape
    if rows == 0:
        return
    finite = np.isfinite(values)
    present = finite.sum(axis=1)
    padded = int(present.sum()) != rows * n
    # Missing values sort last as +inf: each row's present values come first, ascending.
    ascending = np.sort(np.where(finite, values, np.inf) if padded else values, axis=1)
    valid = np.arange(n) < present[:, np.newaxis] if padded else None
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # |x| > 1e154: inf
        kept = ascending if valid is None else np.where(valid, ascending, 0.0)
        means = kept.sum(axis=1) / np.maximum(present, 1)
        deviations = ascending - means[:, np.newaxis]
        if valid is not None:
            deviations = np.where(valid, deviations, 0.0)
        m2 = np.einsum("ij,ij->i", deviations, deviations)
    update_sorted_rows([acc._sketch for acc in accumulators], ascending, present)
    with np.errstate(over="ignore", invalid="ignore"):  # once, not per accumulator
        for i, acc in enumerate(accumulators):
            _add_row(acc, ascending[i], int(present[i]), n, float(means[i]), float(m2[i]))


def _add_row(acc: NumericAccumulator, ascending: _Floats, p: int, n: int, mean: float,
             m2: float) -> None:
    """Add one sorted row (its first ``p`` of ``n`` values present) to ``acc``."""
    if p:
        acc._combine(p, mean, m2)
        low, high = float(ascending[0]), float(ascending[p - 1])
        acc._min = low if not acc._min <= low else acc._min
        acc._max = high if not acc._max >= high else acc._max
        # Counts below each edge: a search of the few edges in the sorted row, whose
        # padding (+inf) is never below an edge. Bin j gains below[j] - below[j-1].
        for edges, counts in ((acc.edges, acc._bin_counts),
                              (acc.fine_edges, acc._fine_bin_counts)):
            if edges.size:
                below = ascending.searchsorted(edges)
                counts[:-1] += below
                counts[1:] -= below
                counts[-1] += p
            elif counts is acc._bin_counts:  # no edges yet: one bin counts everything
                counts[-1] += p
    acc._count += n
    acc._missing_count += n - p


class CategoricalAccumulator:
    """Counts per category of a categorical feature, capped at ``max_tracked`` categories.

    Once ``max_tracked`` distinct categories are tracked, values of any other
    category are added to ``untracked_count``, so totals stay exact while memory
    stays bounded. Which categories get tracked past the cap depends on arrival
    order; within a batch or a merge, new categories are admitted by count
    (descending), then name. Below the cap, every batching and merge order gives
    the same counts.

    Parameters
    ----------
    max_tracked
        Maximum number of distinct categories counted individually.

    Examples
    --------
    >>> acc = CategoricalAccumulator(max_tracked=3)
    >>> acc = acc.update(np.array(["b", "a", None, "b", "c"], dtype=object))
    >>> acc = acc.update(np.array(["d", "a", "b"], dtype=object))
    >>> acc.count, acc.missing_count, acc.untracked_count
    (8, 1, 1)
    >>> acc.top_k(2)
    (['b', 'a'], array([3, 2]), 2)
    """

    def __init__(self, max_tracked: int = 1000, tracked: Sequence[str] = ()) -> None:
        if max_tracked < 0:
            raise ValueError(f"max_tracked must be >= 0, got {max_tracked}")
        self.max_tracked = max_tracked
        self._reset()
        # A reference's categories are always counted, however many others arrive first.
        self._counts.update(dict.fromkeys(tracked, 0))

    def _reset(self) -> None:
        self._count = 0
        self._missing_count = 0
        self._untracked_count = 0
        self._counts: dict[str, int] = {}

    @property
    def count(self) -> int:
        """Number of values seen, missing ones included."""
        return self._count

    @property
    def missing_count(self) -> int:
        """Number of None values seen."""
        return self._missing_count

    @property
    def untracked_count(self) -> int:
        """Number of values whose category arrived after the cap was reached."""
        return self._untracked_count

    @property
    def category_counts(self) -> dict[str, int]:
        """A copy of the per-category counts."""
        return dict(self._counts)

    def _add(self, categories: list[str], counts: _Ints) -> None:
        for i in np.argsort(-counts, kind="stable"):  # one step per distinct category
            category, n = categories[i], int(counts[i])
            if category in self._counts:
                self._counts[category] += n
            elif len(self._counts) < self.max_tracked:
                self._counts[category] = n
            else:
                self._untracked_count += n

    def update(self, values: npt.NDArray[np.object_]) -> Self:
        """Add a batch of categories (str); None means missing."""
        values = np.asarray(values, dtype=object).ravel()
        # Counter hashes in C: ~10x faster than np.unique, which sorts objects in Python.
        counts = Counter(values.tolist())
        missing = counts.pop(None, 0)
        categories = sorted(counts)
        self._add(categories, np.array([counts[c] for c in categories], dtype=np.int64))
        self._count += values.size
        self._missing_count += missing
        return self

    def merge(self, other: CategoricalAccumulator) -> Self:
        """Add ``other`` into this accumulator (this one's ``max_tracked`` applies)."""
        categories = sorted(other._counts)
        counts = np.array([other._counts[c] for c in categories], dtype=np.int64)
        self._add(categories, counts)
        self._count += other._count
        self._missing_count += other._missing_count
        self._untracked_count += other._untracked_count
        return self

    def top_k(self, k: int) -> tuple[list[str], _Ints, int]:
        """The ``k`` most frequent categories (ties by name), their counts, and the rest.

        The third item counts every non-missing value outside the top ``k``,
        untracked values included.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        seen = (item for item in self._counts.items() if item[1])
        ranked = sorted(seen, key=lambda item: (-item[1], item[0]))[:k]
        counts = np.array([n for _, n in ranked], dtype=np.int64)
        other = self._count - self._missing_count - int(counts.sum())
        return [c for c, _ in ranked], counts, other

    def to_state(self) -> dict[str, Any]:
        """Plain state for JSON or pickle; categories sorted by name."""
        categories = sorted(self._counts)
        return {
            "max_tracked": self.max_tracked,
            "count": self._count,
            "missing_count": self._missing_count,
            "untracked_count": self._untracked_count,
            "categories": categories,
            "counts": np.array([self._counts[c] for c in categories], dtype=np.int64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an accumulator from :meth:`to_state` output (possibly JSON-decoded)."""
        acc = cls(int(state["max_tracked"]))
        acc._count = int(state["count"])
        acc._missing_count = int(state["missing_count"])
        acc._untracked_count = int(state["untracked_count"])
        counts = np.asarray(state["counts"], dtype=np.int64).tolist()
        acc._counts = dict(zip(state["categories"], counts, strict=True))
        return acc
