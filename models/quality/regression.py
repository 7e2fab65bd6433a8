"""Regression error sums for one window, exact under signed (retracting) adds.

Every float sum is kept in fixed point: each row's term is rounded to a multiple
of ``2**-64`` and the rounded terms are summed as integers (Python ``int`` here,
``Int256`` in ClickHouse). Integer sums are exact and associative, so adding a
batch and then retracting it (``sign=-1``) gives exactly zero, and a corrected
label (old pair with ``-1``, new pair with ``+1``) gives exactly the sums of
having seen the new label alone, whatever the order of adds and merges. With
float sums, retracting ``y = 1e12`` would leave rounding noise larger than a
later ``y = 1``'s square.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Self

import numpy as np
import numpy.typing as npt

__all__ = ["FRACTION_BITS", "MAX_ABS_VALUE", "RegressionSums", "checked_sign", "fixed_point_sums"]

FRACTION_BITS = 64
"""Fixed-point sums (``*_fx64`` columns) hold ``round(term * 2**64)``."""
MAX_ABS_VALUE = 2.0**62
"""Largest ``|y_true|`` or ``|y_pred|`` accepted: keeps every sum inside ``Int256``."""
_MAX_APE = 2.0**64  # |e| / |y| for tiny nonzero y is clipped here (keeps terms < 2**126)
_SHIFTS = 192  # exponents of scaled terms (< 2**191 with FRACTION_BITS = 64) minus 53
_MAX_BATCH = 2**31  # int64 sums of < 2**32 halves are exact below this many rows
_SUMS = ("error", "abs_error", "sq_error", "target", "sq_target", "ape")

_Floats = npt.NDArray[np.float64]


def checked_sign(sign: int) -> int:
    """``sign`` if it is ``1`` or ``-1``, else ``ValueError``."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    return sign


def fixed_point_sums(terms: _Floats, bits: int = FRACTION_BITS) -> list[int]:
    """Exact ``sum(round(t * 2**bits))`` of each row of a 2-D float array, as ``int``.

    Each rounded term (a float holding an integer) is written exactly as
    ``M · 2**shift`` with ``|M| < 2**53``; ``M`` is split into 32-bit halves that
    are summed in ``int64`` per (row, shift) bucket and joined with shifts in
    Python. Rounding is half to even. Terms must be finite with
    ``|t| · 2**bits < 2**191``.

    Examples
    --------
    >>> fixed_point_sums(np.array([[0.1, 1e12, -1e12], [2.0**70, 1.0, -(2.0**70)]]), bits=4)
    [2, 16]
    """
    if terms.shape[1] >= _MAX_BATCH:
        raise ValueError(f"batches must have fewer than {_MAX_BATCH} rows")
    scaled = np.rint(np.ldexp(terms, bits))
    shift = np.maximum(np.frexp(scaled)[1] - 53, 0)
    mantissa = np.ldexp(scaled, -shift).astype(np.int64).ravel()
    bucket = (shift + _SHIFTS * np.arange(terms.shape[0])[:, None]).ravel()
    low = np.zeros(terms.shape[0] * _SHIFTS, dtype=np.int64)
    high = np.zeros_like(low)
    np.add.at(low, bucket, mantissa & 0xFFFFFFFF)  # two's complement: M = high·2**32 + low
    np.add.at(high, bucket, mantissa >> 32)
    totals = []
    for row in range(terms.shape[0]):
        cells = slice(row * _SHIFTS, (row + 1) * _SHIFTS)
        pairs = zip(high[cells].tolist(), low[cells].tolist(), strict=True)
        totals.append(sum(((h << 32) + lo) << s for s, (h, lo) in enumerate(pairs) if h or lo))
    return totals


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


class RegressionSums:
    """Additive error sums of a regression model's labeled predictions.

    With ``e = y_pred - y_true`` it holds ``count``, ``Σe``, ``Σ|e|``, ``Σe²``,
    ``Σy``, ``Σy²`` and ``Σ|e|/|y|`` over the rows with ``y != 0`` with their
    count. Rows with ``y == 0`` have no percentage error: MAPE leaves them out and
    ``metrics()["target_zero_count"]`` counts them. Ratios ``|e|/|y|`` above
    ``2**64`` (tiny nonzero ``y``) are clipped there.

    Error: each term is computed in float64 (relative error ``<= 2**-53``) and
    rounded to a multiple of ``2**-64``; sums are then exact, so MAE, MAPE and the
    mean error are within a few ulps plus ``2**-65`` of a float64 computation, and
    RMSE within a few ulps plus ``2**-32`` (the square root of MSE's ``2**-65``).
    R² uses ``n·Σy² - (Σy)²`` computed exactly, but ``Σy²`` carries the float
    rounding of each ``y²``: the relative error of ``Σ(y - ȳ)²`` is about
    ``2**-53 · Σy² / Σ(y - ȳ)²``. R² is None when
    ``Σ(y - ȳ)² <= 2**-50·Σy² + 2**-64·(|Σy| + n)``, where rounding could be an
    eighth of it (a constant ``y``, or ``y`` too small for the ``2**-64`` grid).

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> y = rng.normal(10.0, 2.0, size=1_000)
    >>> sums = RegressionSums().add(y, y + rng.normal(0.5, 1.0, size=1_000))
    >>> sums = sums.add(np.array([0.0]), np.array([1.0]))
    >>> m = sums.metrics()
    >>> [round(m[k], 4) for k in ("mae", "rmse", "mean_error", "mape", "r2")]
    [0.8955, 1.106, 0.5173, 0.0935, 0.7053]
    >>> m["count"], m["target_zero_count"]
    (1001, 1)
    >>> retracted = sums.add(np.array([0.0]), np.array([1.0]), sign=-1)
    >>> retracted.metrics()["target_zero_count"]
    0
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._ape_count = 0
        self._sums = dict.fromkeys(_SUMS, 0)

    @property
    def count(self) -> int:
        """Number of labeled rows (signed adds included)."""
        return self._count

    def add(self, y_true: _Floats, y_pred: _Floats, sign: int = 1) -> Self:
        """Add (``sign=1``) or retract (``sign=-1``) a batch of labeled predictions.

        Raises ``ValueError`` for non-finite values or ``|value| > MAX_ABS_VALUE``.
        """
        sign = checked_sign(sign)
        y = np.asarray(y_true, dtype=np.float64).ravel()
        pred = np.asarray(y_pred, dtype=np.float64).ravel()
        if y.shape != pred.shape:
            raise ValueError(f"y_true has {y.size} rows but y_pred has {pred.size}")
        for values in (y, pred):
            if not np.all(np.abs(values) <= MAX_ABS_VALUE):  # also catches NaN
                raise ValueError(f"values must be finite with |value| <= {MAX_ABS_VALUE}")
        error = pred - y
        nonzero = y != 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # y == 0 or tiny
            ape = np.where(nonzero, np.minimum(np.abs(error) / np.abs(y), _MAX_APE), 0.0)
        terms = np.stack([error, np.abs(error), error * error, y, y * y, ape])
        for name, total in zip(_SUMS, fixed_point_sums(terms), strict=True):
            self._sums[name] += sign * total
        self._count += sign * y.size
        self._ape_count += sign * int(nonzero.sum())
        return self

    def merge(self, other: RegressionSums) -> Self:
        """Add ``other``'s sums into these."""
        self._count += other._count
        self._ape_count += other._ape_count
        for name in _SUMS:
            self._sums[name] += other._sums[name]
        return self

    def _r2(self) -> float | None:
        n, s = self._count, self._sums
        scale = 1 << FRACTION_BITS
        centred = n * s["sq_target"] * scale - s["target"] ** 2  # n·Σ(y - ȳ)², scaled 2**128
        # Bound on the error of `centred`: float rounding of each y² (2**-53 relative,
        # doubled twice for margin) and the 2**-65 rounding of each fixed-point term.
        floor = (abs(n * s["sq_target"] * scale) >> 50) + n * abs(s["target"]) + n * n * scale
        if n <= 0 or centred <= floor:
            return None
        return float(1 - Fraction(n * s["sq_error"] * scale, centred))

    def metrics(self) -> dict[str, float | None]:
        """MAE, RMSE, mean error (bias), MAPE (a ratio, not %), R² and counts.

        A metric is None when its denominator is zero (no rows; no ``y != 0`` rows
        for MAPE; zero variance of ``y`` for R²).
        """
        n, s = self._count, self._sums
        scale = 1 << FRACTION_BITS
        mse = _ratio(s["sq_error"], n * scale) if n > 0 else None
        return {
            "count": n,
            "mae": _ratio(s["abs_error"], n * scale) if n > 0 else None,
            "rmse": None if mse is None else math.sqrt(max(mse, 0.0)),
            "mean_error": _ratio(s["error"], n * scale) if n > 0 else None,
            "mape": _ratio(s["ape"], self._ape_count * scale) if self._ape_count > 0 else None,
            "r2": self._r2(),
            "target_zero_count": n - self._ape_count,
        }

    def to_columns(self) -> dict[str, int]:
        """Flat, additive columns: ``count``, ``ape_count`` (Int64) and ``sum_*_fx64``
        (Int256, the sum scaled by ``2**64``). Every column adds with SQL ``sum()``."""
        columns = {"count": self._count, "ape_count": self._ape_count}
        columns.update({f"sum_{name}_fx64": value for name, value in self._sums.items()})
        return columns

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_columns` output (or its SQL sums)."""
        sums = cls()
        sums._count = int(columns["count"])
        sums._ape_count = int(columns["ape_count"])
        sums._sums = {name: int(columns[f"sum_{name}_fx64"]) for name in _SUMS}
        return sums
