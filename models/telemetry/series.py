"""One telemetry reading over one window: count, nulls, mean, max and an exact p95.

An agent samples every few seconds (5 s by default), so a one-minute window holds about
a dozen readings: keeping them and asking numpy is exact and cheaper than a sketch. To
stay bounded whatever the interval and window, at most :data:`MAX_KEPT` values are kept;
past that every other kept value is dropped and only every ``stride``-th new one is kept,
so the p95 comes from an evenly spaced subsample while count, mean and max stay exact.
What is kept depends only on the order of the readings, never on how they were batched.

>>> series = MetricSeries()
>>> for value in (61, None, 63, 90):
...     series.add(value)
>>> series.summary()
MetricSummary(count=3, nulls=1, mean=71.33333333333333, max=90.0, p95=87.3)
>>> MetricSeries.from_state(series.to_state()).summary() == series.summary()
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["MAX_KEPT", "MetricSeries", "MetricSummary"]

#: Values kept per reading and window for the p95: a 1 s interval in a 60 min window.
MAX_KEPT = 4096
P95 = 0.95


@dataclasses.dataclass(frozen=True, slots=True)
class MetricSummary:
    """A reading over a window: ``None`` statistics when every sample had it null."""

    count: int
    nulls: int
    mean: float | None
    max: float | None
    #: numpy's default (linear interpolation) 0.95 quantile of the values.
    p95: float | None


class MetricSeries:
    """The readings of one metric in one window, in arrival order."""

    __slots__ = ("count", "maximum", "nulls", "stride", "total", "values")

    def __init__(self) -> None:
        self.count = 0
        self.nulls = 0
        self.total = 0.0
        self.maximum: float | None = None
        self.values: list[float] = []
        self.stride = 1

    def add(self, value: float | None) -> None:
        if value is None:
            self.nulls += 1
            return
        value = float(value)
        if self.count % self.stride == 0:
            self.values.append(value)
        self.count += 1
        self.total += value
        self.maximum = value if self.maximum is None else max(self.maximum, value)
        if len(self.values) > MAX_KEPT:
            self.values = self.values[::2]
            self.stride *= 2

    def summary(self) -> MetricSummary:
        if not self.count:
            return MetricSummary(0, self.nulls, None, None, None)
        p95 = float(np.quantile(np.asarray(self.values), P95))
        return MetricSummary(self.count, self.nulls, self.total / self.count, self.maximum, p95)

    def to_state(self) -> list[Any]:
        return [self.count, self.nulls, self.total, self.maximum, self.values, self.stride]

    @classmethod
    def from_state(cls, state: list[Any]) -> MetricSeries:
        series = cls()
        (series.count, series.nulls, series.total, series.maximum, series.values,
         series.stride) = state
        return series
