"""Quiet versions judged on consecutive windows merged until they hold enough values.

A version serving a few hundred predictions a minute never reaches a rule's ``min_count``
in one window, so one window alone could never alert. :class:`Spans` keeps, per feature, the
windows that were too small to judge, merged (:func:`merge_rows`: counts and histograms add,
the range widens), and hands the merged row over to be scored once it holds enough values;
its ``window_start`` is the first merged window's, so the score row and the alert say which
span was judged. A window big enough on its own is judged alone (a span waiting is dropped:
the feature's traffic is back), and a span that reaches :data:`MAX_SPAN_WINDOWS` without
enough values is given up.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from driftline.models.windows.feature_windows import FeatureWindowRow

__all__ = ["MAX_SPAN_WINDOWS", "Spans", "merge_rows", "span_note"]

#: The most windows one span merges (an hour of one-minute windows).
MAX_SPAN_WINDOWS = 60


def merge_rows(first: FeatureWindowRow, then: FeatureWindowRow) -> FeatureWindowRow:
    """One row for two consecutive windows of one feature binned alike (see
    :meth:`Spans.judged_rows`): what scoring reads adds up exactly; quantiles are dropped
    (a sketch's estimates do not merge).

    >>> from driftline.models.windows.feature_windows import FeatureWindowRow
    >>> a = FeatureWindowRow("m", "1", "x", "numeric", 0, 60, 3, 1, 1.0, 0.0, 1.0, 1.0, (),
    ...                      (0.0, 2.0), (0, 2, 0), (), (), 0)
    >>> b = dataclasses.replace(a, window_start=60, window_end=120, count=2, missing_count=0,
    ...                         mean=3.0, min=3.0, max=3.0, bin_counts=(0, 0, 2))
    >>> m = merge_rows(a, b)
    >>> m.window_start, m.window_end, m.count, m.mean, m.variance, m.max, m.bin_counts
    (0, 120, 5, 2.0, 1.0, 3.0, (0, 2, 2))
    """
    n1, n2 = first.present, then.present
    n = n1 + n2
    mean, variance = _moments(first, then, n1, n2)
    tracked = dict(first.tracked_counts)
    for category, count in then.tracked_counts.items():
        tracked[category] = tracked.get(category, 0) + count
    named = dict(zip(first.categories, first.category_counts, strict=True))
    for category, count in zip(then.categories, then.category_counts, strict=True):
        named[category] = named.get(category, 0) + count
    top = sorted((tracked or named).items(), key=lambda kv: (-kv[1], kv[0]))
    top = [(c, k) for c, k in top if k][: max(len(first.categories), len(then.categories))]
    return dataclasses.replace(
        then, window_start=first.window_start, count=first.count + then.count,
        missing_count=first.missing_count + then.missing_count,
        invalid_count=first.invalid_count + then.invalid_count,
        window_events=first.window_events + then.window_events,
        mean=mean, variance=variance,
        min=float(np.fmin(first.min, then.min)), max=float(np.fmax(first.max, then.max)),
        quantiles=(), bin_counts=_added(first.bin_counts, then.bin_counts),
        fine_bin_counts=_added(first.fine_bin_counts, then.fine_bin_counts),
        categories=tuple(c for c, _ in top), category_counts=tuple(k for _, k in top),
        other_count=n - sum(k for _, k in top) if first.kind == "categorical" else 0,
        tracked_counts=tracked)


def _moments(first: FeatureWindowRow, then: FeatureWindowRow, n1: int,
             n2: int) -> tuple[float, float]:
    if not n1 or not n2:
        return (then.mean, then.variance) if n2 else (first.mean, first.variance)
    n = n1 + n2
    delta = then.mean - first.mean
    mean = first.mean + delta * n2 / n
    variance = (first.variance * n1 + then.variance * n2 + delta * delta * n1 * n2 / n) / n
    return mean, variance


def _added(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b:
        return a or b
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _binned_alike(a: FeatureWindowRow, b: FeatureWindowRow) -> bool:
    return (a.kind == b.kind and a.bin_edges == b.bin_edges
            and a.fine_bin_edges == b.fine_bin_edges
            and len(a.bin_counts) == len(b.bin_counts)
            and len(a.fine_bin_counts) == len(b.fine_bin_counts))


class Spans:
    """The windows of one version waiting, per feature, to hold enough values."""

    def __init__(self) -> None:
        #: feature -> (merged row, windows merged)
        self.pending: dict[str, tuple[FeatureWindowRow, int]] = {}

    def judged_rows(self, window: Sequence[FeatureWindowRow],
                    min_count: Callable[[str], int]) -> tuple[list[FeatureWindowRow],
                                                              dict[str, int]]:
        """The rows of this window to score: each feature's own row, or, for a feature
        whose row holds fewer than ``min_count(feature)`` values, its span merged up to
        here once that holds them; and, per merged feature, how many windows its row spans."""
        rows: list[FeatureWindowRow] = []
        spans: dict[str, int] = {}
        for row in window:
            need = min_count(row.feature)
            waiting = self.pending.pop(row.feature, None)
            if row.present >= need:
                rows.append(row)
                continue
            if waiting is not None and _binned_alike(waiting[0], row):
                merged, windows = merge_rows(waiting[0], row), waiting[1] + 1
            else:  # nothing waiting, or binned otherwise (a new reference): start again
                merged, windows = row, 1
            if merged.present >= need:
                rows.append(merged)
                spans[row.feature] = windows
                continue
            rows.append(row)  # scored as it is, and too small for the rules to judge
            if windows < MAX_SPAN_WINDOWS:
                self.pending[row.feature] = (merged, windows)
        return rows, spans

    def to_state(self, row_state: Callable[[FeatureWindowRow], Any]) -> list[Any]:
        return [[name, row_state(row), windows]
                for name, (row, windows) in sorted(self.pending.items())]

    @classmethod
    def from_state(cls, state: list[Any],
                   row_from_state: Callable[[Any], FeatureWindowRow]) -> Spans:
        spans = cls()
        spans.pending = {name: (row_from_state(row), int(windows))
                         for name, row, windows in state}
        return spans


def span_note(windows: int, start_ms: int) -> str:
    """How an alert names a merged span.

    >>> span_note(4, 1764237300000)
    'on 4 windows merged from 09:55 UTC'
    """
    start = datetime.datetime.fromtimestamp(start_ms / 1000, datetime.UTC)
    return f"on {windows} windows merged from {start:%H:%M} UTC"
