"""How many distinct request ids a window saw, in 4 kB: a HyperLogLog sketch.

A window's events minus its distinct request ids are its duplicates: a publisher called
twice, a retry that resent an envelope, a backfill replayed over live traffic. Keeping the
ids themselves would make state and checkpoints grow with traffic; the sketch stays 4,096
one-byte registers whatever the traffic, merges by register-wise max, and is idempotent:
adding an id again changes nothing, so a replay after a crash cannot make duplicates.

Ids are hashed in numpy, all at once: a multilinear hash of their UTF-32 code units with
fixed keys, then MurmurHash3's 64-bit finaliser for the bits HyperLogLog reads. The hash is
stable across processes (Python's ``hash`` of a str is not), so a checkpointed sketch goes
on counting the same ids after a restart; a NUL character in an id counts as nothing. The
estimate is Ertl's improved estimator ("New cardinality estimation algorithms for
HyperLogLog sketches", 2017), unbiased from one id to billions; its relative standard error
is 1.04 / sqrt(4096) = 1.6 % (about 1 % below ~1,000 ids).

>>> sketch = DistinctCounter()
>>> sketch.add([f"r-{i}" for i in range(5000)] + ["r-1", "r-2"])
>>> abs(sketch.estimate() / 5000 - 1) < 0.05  # 5,000 distinct, 2 repeated
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["DistinctCounter", "request_hashes"]

P = 12  # register index bits: 4,096 registers
M = 1 << P
_Q = 64 - P  # hash bits that set a register's value (its leading zeros + 1)
_MIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)


def request_hashes(ids: Sequence[str]) -> npt.NDArray[np.uint64]:
    """A stable 64-bit hash of each id (a NUL code unit counts as nothing)."""
    if not ids:
        return np.zeros(0, dtype=np.uint64)
    text = np.asarray(ids, dtype=np.str_)
    width = text.dtype.itemsize // 4
    units = text.view(np.uint32).reshape(len(ids), width).astype(np.uint64)
    # A multilinear hash: each code unit times its position's odd key, summed (mod 2^64).
    # The zeros numpy pads shorter ids with add nothing, so an id hashes the same in a
    # batch of short ids as in one of long ids; then the finaliser spreads the bits.
    return _finalised(units @ _keys(width))


def _keys(width: int) -> npt.NDArray[np.uint64]:
    while len(_KEYS) < width:  # ids are at most 256 characters: a handful of extensions
        _KEYS.append(int(_finalised(np.array([len(_KEYS) + 1], dtype=np.uint64))[0]) | 1)
    return np.array(_KEYS[:width], dtype=np.uint64)


def _finalised(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """MurmurHash3's 64-bit finaliser, in place."""
    hashes ^= hashes >> _SHIFT
    hashes *= _MIX_1
    hashes ^= hashes >> _SHIFT
    hashes *= _MIX_2
    hashes ^= hashes >> _SHIFT
    return hashes


_KEYS: list[int] = []


class DistinctCounter:
    """A HyperLogLog sketch of request ids (4,096 registers)."""

    __slots__ = ("registers",)

    def __init__(self, registers: npt.NDArray[np.uint8] | None = None) -> None:
        self.registers = (np.zeros(M, dtype=np.uint8) if registers is None
                          else np.asarray(registers, dtype=np.uint8).copy())
        if self.registers.shape != (M,):
            raise ValueError(f"a DistinctCounter has {M} registers, got {self.registers.shape}")

    def add(self, ids: Sequence[str]) -> None:
        self.add_hashes(request_hashes(ids))

    def add_hashes(self, hashes: npt.NDArray[np.uint64]) -> None:
        if not hashes.size:
            return
        index = (hashes >> np.uint64(_Q)).astype(np.intp)
        rest = hashes & np.uint64((1 << _Q) - 1)
        # Leading zeros of the _Q-bit rest, plus one; an all-zero rest reads _Q + 1.
        # frexp's exponent is exact for integers below 2^53, as every rest is.
        bits = np.frexp(rest.astype(np.float64))[1]
        rank = np.where(rest == 0, _Q + 1, _Q - bits + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: DistinctCounter) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> float:
        """The number of distinct ids added (Ertl's improved raw estimator)."""
        counts = np.bincount(self.registers, minlength=_Q + 2)
        z = M * _tau(1.0 - counts[_Q + 1] / M)
        for k in range(_Q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += M * _sigma(counts[0] / M)
        return float(M * M / (2.0 * math.log(2.0) * z)) if math.isfinite(z) else 0.0


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0
