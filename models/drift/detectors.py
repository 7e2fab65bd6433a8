"""Online drift detectors (river) over named value streams, with state that pickles.

Cost per value, measured with river 0.26.1 on one core (``DetectorBank.update``, loop included):
ADWIN ~0.3 µs, PageHinkley ~0.55 µs, KSWIN ~250 µs (a scipy ``ks_2samp`` on every value once
its window is full), plus ~5 µs per update. ``max_values_per_update`` bounds one update's cost.

Memory per stream and detector: ADWIN O(max_buckets · log(width)) buckets, its window
growing until a drift resets it; KSWIN ``window_size`` floats; PageHinkley O(1). A bank has
at most ``max_streams`` streams (one per model version holds a score stream plus one per
feature).

After a hit every river detector starts from scratch on its *next* value (``_reset`` at the
top of ``update``); nothing of the old window is kept. Each is then blind for a while: ADWIN
for at least ``grace_period`` values (30 or more measured), KSWIN for ``window_size`` values
(its RNG re-seeded from ``seed``), PageHinkley for ``min_instances`` values. A persistent shift
therefore gives one hit per detector, a drifting trend one hit per blind period: turning hits
into one alert per incident is not done here.

ADWIN and PageHinkley thresholds are in the stream's units and the defaults assume values of
unit scale (feed z-scores against the reference); KSWIN is rank based and scale free.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Self, get_args

import numpy as np
import numpy.typing as npt
from river import drift
from river.base import BinaryDriftDetector, DriftDetector

__all__ = [
    "DEFAULT_PARAMS",
    "DEFAULT_SPECS",
    "SCORE_STREAM",
    "DetectorBank",
    "DetectorHit",
    "DetectorSpec",
    "feature_mean_stream",
]

Kind = Literal["adwin", "kswin", "page_hinkley", "ddm", "eddm", "hddm_a"]
Param = float | int | str

SCORE_STREAM: Final = "output.score"

DEFAULT_PARAMS: Final[Mapping[str, Mapping[str, Param]]] = MappingProxyType(
    {
        # clock 8, not river's 32: ADWIN only tests every `clock` values, so a change waits up to
        # clock - 1 extra values (river #1061): a 3σ shift is caught after <= 15 values, not 23,
        # and 8 costs the same per value as 32 (~0.14 µs in river itself).
        "adwin": MappingProxyType(
            {
                "delta": 0.002,
                "clock": 8,
                "max_buckets": 5,
                "min_window_length": 5,
                "grace_period": 10,
            }
        ),
        # alpha 1e-5, not river's 0.005: the KS test runs on every value, and at 0.005 91% of
        # stationary N(0, 1) streams of 2,000 values raise a false alarm; at 1e-5 0.7% do
        # (3.6e-6 per value, 280k values measured). A fixed seed makes hits reproducible.
        "kswin": MappingProxyType({"alpha": 1e-5, "window_size": 100, "stat_size": 30, "seed": 42}),
        # delta 0.25, threshold 50 (river: 0.005, 50): delta is half the smallest shift worth
        # catching (0.5σ); with river's delta 74% of stationary N(0, 1) streams of 2,000 values
        # alarm, with 0.25 none did (~44 false alarms per 1M values).
        "page_hinkley": MappingProxyType(
            {"min_instances": 30, "delta": 0.25, "threshold": 50.0, "alpha": 0.9999, "mode": "both"}
        ),
        # Error-rate detectors for delayed labels: they take 1 for an error, 0 for a hit
        # (river #688), never a value. river's defaults.
        "ddm": MappingProxyType({"warm_start": 30, "warning_threshold": 2.0,
                                 "drift_threshold": 3.0}),
        "eddm": MappingProxyType({"warm_start": 30, "alpha": 0.95, "beta": 0.9}),
        "hddm_a": MappingProxyType({"drift_confidence": 0.001, "warning_confidence": 0.005,
                                    "two_sided_test": False}),
    }
)

#: Value detectors (ADWIN, KSWIN, PageHinkley) and error-rate detectors (DDM, EDDM, HDDM_A).
Detector = DriftDetector | BinaryDriftDetector

_FACTORIES: Final[Mapping[str, Callable[..., Detector]]] = MappingProxyType(
    {"adwin": drift.ADWIN, "kswin": drift.KSWIN, "page_hinkley": drift.PageHinkley,
     "ddm": drift.binary.DDM, "eddm": drift.binary.EDDM, "hddm_a": drift.binary.HDDMA}
)


def feature_mean_stream(feature: str) -> str:
    """Name of the stream of per-window means of ``feature``.

    Examples
    --------
    >>> feature_mean_stream("amount")
    'feature.amount.mean'
    """
    return f"feature.{feature}.mean"


@dataclass(frozen=True)
class DetectorSpec:
    """Which river detector to run, with all its hyperparameters.

    ``params`` overrides :data:`DEFAULT_PARAMS` and is normalised to every parameter, sorted,
    so two specs that build the same detector compare equal. river validates the values.

    Examples
    --------
    >>> spec = DetectorSpec.of("adwin", delta=0.01)
    >>> dict(spec.params)
    {'clock': 8, 'delta': 0.01, 'grace_period': 10, 'max_buckets': 5, 'min_window_length': 5}
    >>> spec == DetectorSpec("adwin", (("delta", 0.01),))
    True
    >>> spec.build().clock
    8
    """

    kind: Kind
    params: tuple[tuple[str, Param], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in get_args(Kind):
            raise ValueError(f"unknown detector {self.kind!r}; expected one of {get_args(Kind)}")
        defaults, given = DEFAULT_PARAMS[self.kind], dict(self.params)
        if unknown := sorted(given.keys() - defaults.keys()):
            raise ValueError(f"{self.kind} has no parameter(s) {unknown}")
        object.__setattr__(self, "params", tuple(sorted({**defaults, **given}.items())))
        self.build()

    @classmethod
    def of(cls, kind: Kind, **params: Param) -> Self:
        """Spec of ``kind`` with ``params`` overriding the defaults."""
        return cls(kind, tuple(params.items()))

    def build(self) -> Detector:
        """A fresh river detector."""
        return _FACTORIES[self.kind](**dict(self.params))


DEFAULT_SPECS: Final = (DetectorSpec("adwin"), DetectorSpec("page_hinkley"))


@dataclass(frozen=True)
class DetectorHit:
    """A detector signalled drift on ``stream`` at ``values[index]`` of one update.

    Examples
    --------
    >>> DetectorHit("output.score", "adwin", 7)
    DetectorHit(stream='output.score', detector='adwin', index=7)
    """

    stream: str
    detector: Kind
    index: int


class DetectorBank:
    """One instance of each configured detector per named stream, for one model version.

    Streams are created on first use. Non-finite values are skipped; past
    ``max_values_per_update`` finite values, an update feeds an evenly spaced, deterministic
    subset of them (a replayed message gives the same hits). A hit's ``index`` is the position
    in the ``values`` passed. The default specs leave out KSWIN: it costs ~1,000x more per
    value.

    ``from_bytes`` unpickles: only give it bytes this code wrote (e.g. a table changelog),
    with the same river version.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> bank = DetectorBank()
    >>> bank.update(SCORE_STREAM, rng.normal(0.0, 1.0, 500))
    []
    >>> restored = DetectorBank.from_bytes(bank.to_bytes())
    >>> shifted = rng.normal(3.0, 1.0, 100)
    >>> hits = bank.update(SCORE_STREAM, shifted)
    >>> [(hit.detector, hit.index) for hit in hits]
    [('adwin', 15), ('page_hinkley', 18)]
    >>> restored.update(SCORE_STREAM, shifted) == hits
    True
    """

    def __init__(
        self,
        specs: Sequence[DetectorSpec] = DEFAULT_SPECS,
        max_values_per_update: int = 256,
        max_streams: int = 1024,
    ) -> None:
        kinds = [spec.kind for spec in specs]
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"need one or more distinct detector kinds, got {kinds}")
        if max_values_per_update < 1 or max_streams < 1:
            raise ValueError("max_values_per_update and max_streams must be >= 1")
        self.specs = tuple(specs)
        self.max_values_per_update = max_values_per_update
        self.max_streams = max_streams
        self._streams: dict[str, tuple[Detector, ...]] = {}

    @property
    def streams(self) -> tuple[str, ...]:
        """Names of the streams seen so far, in order of first use."""
        return tuple(self._streams)

    def update(self, stream: str, values: npt.ArrayLike) -> list[DetectorHit]:
        """Feed ``values`` in order to every detector of ``stream``; hits in order of index."""
        detectors = self._detectors(stream)
        positions, xs = self._subsample(values)
        hits: list[DetectorHit] = []
        for spec, detector in zip(self.specs, detectors, strict=True):
            # Error-rate detectors take 1 for an error (a bool); the others take the value.
            feed: Callable[[Any], object] = detector.update
            for position, x in zip(positions, xs, strict=True):
                feed(x)
                if detector.drift_detected:
                    hits.append(DetectorHit(stream, spec.kind, position))
        hits.sort(key=lambda hit: hit.index)
        return hits

    def to_bytes(self) -> bytes:
        """Whole state, RNGs included, as pickle bytes."""
        return pickle.dumps(self, protocol=5)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Bank saved by :meth:`to_bytes`."""
        bank = pickle.loads(data)
        if not isinstance(bank, cls):
            raise TypeError(f"expected a pickled {cls.__name__}, got {type(bank).__name__}")
        return bank

    def _detectors(self, stream: str) -> tuple[Detector, ...]:
        detectors = self._streams.get(stream)
        if detectors is None:
            if len(self._streams) >= self.max_streams:
                raise ValueError(f"stream {stream!r} is over max_streams={self.max_streams}")
            detectors = self._streams[stream] = tuple(spec.build() for spec in self.specs)
        return detectors

    def _subsample(self, values: npt.ArrayLike) -> tuple[list[int], list[float]]:
        flat = np.asarray(values, dtype=np.float64).ravel()
        positions = np.flatnonzero(np.isfinite(flat))
        if positions.size > self.max_values_per_update:
            picks = np.arange(self.max_values_per_update) * positions.size
            positions = positions[picks // self.max_values_per_update]
        return positions.tolist(), flat[positions].tolist()
