"""Reference profiles: what "normal" looks like for one model version, feature by feature.

A profile comes from training data (``driftline reference build``) or from the first
windows a version served in production (a *baseline*). Each numeric feature carries two
sets of frozen bin edges: coarse ``edges`` (equal-frequency deciles by default, plus an
underflow and an overflow bin) on which windows report histograms and PSI / JS are
computed, and ``fine_edges`` (percentiles) on which KS and Wasserstein are computed with
a stated error bound. Windows of the version are binned on exactly these edges, so every
window is comparable with the reference and with every other window.

Histogram layout, for ``k`` edges ``e0 < ... < e(k-1)``: ``k + 1`` counts, ``[x < e0]``,
``[e0 <= x < e1]``, ..., ``[x >= e(k-1)]`` (``np.searchsorted(edges, x, side="right")``).

>>> ref = NumericReference(edges=(0.0, 1.0), counts=(0, 5, 0), fine_edges=(0.0, 0.5, 1.0),
...                        fine_counts=(0, 2, 3, 0), count=5, missing_count=0, mean=0.5,
...                        std=0.3, min=0.0, max=0.9, quantiles=(0.0,) * 7)
>>> profile = ReferenceProfile("fraud", "v1", "training", 1764230400000, {"x": ref})
>>> ReferenceProfile.from_json(profile.to_json()) == profile
True
>>> profile.key
b'fraud/v1'
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import typing
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

ReferenceSource = Literal["training", "baseline"]
_Objects = npt.NDArray[np.object_]
#: Integral floats below this print as integers; beyond it floats are no longer exact.
_EXACT_INTEGERS = 2.0**53
#: The categories of a reference's rest it names, most frequent first: a window value in
#: none of them counts as unseen (so unseen_share is an upper bound past this many).
MAX_REST_CATEGORIES = 1_000


@dataclasses.dataclass(frozen=True)
class NumericReference:
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    fine_edges: tuple[float, ...]
    fine_counts: tuple[int, ...]
    count: int
    missing_count: int
    mean: float
    std: float
    min: float
    max: float
    #: At :data:`driftline.models.windows.feature_windows.QUANTILE_LEVELS`.
    quantiles: tuple[float, ...]
    kind: Literal["numeric"] = "numeric"

    @property
    def present(self) -> int:
        return self.count - self.missing_count


@dataclasses.dataclass(frozen=True)
class CategoricalReference:
    #: The reference's top categories; everything else was counted in ``other_count``.
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other_count: int
    count: int
    missing_count: int
    kind: Literal["categorical"] = "categorical"
    #: The categories counted in ``other_count`` (at most :data:`MAX_REST_CATEGORIES`, most
    #: frequent first): seen in the reference, so not new when a window has them.
    rest: tuple[str, ...] = ()

    @property
    def present(self) -> int:
        return self.count - self.missing_count

    @functools.cached_property
    def seen(self) -> frozenset[str]:
        """Every category the reference names: its top ones and those of its rest."""
        return frozenset(self.categories) | frozenset(self.rest)


FeatureReference = NumericReference | CategoricalReference


def _feature_state(feature: FeatureReference) -> dict[str, Any]:
    state = _fields_of(feature)
    for name, value in state.items():
        if isinstance(value, tuple) and name not in ("categories", "rest"):
            state[name] = np.asarray(value, dtype=np.int64 if "counts" in name else np.float64)
    return state


def _feature_from_state(state: Mapping[str, Any]) -> FeatureReference:
    fields: dict[str, Any] = {
        name: tuple(value.tolist()) if isinstance(value, np.ndarray)
        else tuple(value) if isinstance(value, list) else value
        for name, value in state.items()}
    if fields["kind"] == "numeric":
        return NumericReference(**fields)
    return CategoricalReference(**fields)


def _fields_of(obj: Any) -> dict[str, Any]:
    return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}


def _json_fields(obj: Any) -> dict[str, Any]:
    # An empty rest is left out, so a profile that names none (all made before rests were
    # kept) has the JSON, and so the profile_id, it always had.
    fields = _fields_of(obj)
    if fields.get("rest") == ():
        del fields["rest"]
    return fields


@dataclasses.dataclass(frozen=True)
class ReferenceProfile:
    model: str
    version: str
    source: ReferenceSource
    created_at_ms: int
    features: Mapping[str, FeatureReference]

    @property
    def key(self) -> bytes:
        """Kafka key on the (compacted) references topic: one live profile per version."""
        return f"{self.model}/{self.version}".encode()

    @functools.cached_property
    def profile_id(self) -> str:
        """Content hash: windows remember which profile their edges came from."""
        return hashlib.sha256(self.to_json()).hexdigest()[:16]

    def to_json(self) -> bytes:
        """The profile as JSON (computed once: a profile is immutable, and checkpoints
        include the live one every second)."""
        return self._json

    @functools.cached_property
    def _json(self) -> bytes:
        # Field by field, not dataclasses.asdict: that deep-copies every count (16 ms for
        # 25 features, paid by every new baseline).
        doc = _fields_of(self)
        doc["features"] = dict(self.features)
        return orjson.dumps(doc, default=_json_fields,
                            option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS)

    def to_state(self) -> dict[str, Any]:
        """The profile for a checkpoint record: columns as numpy arrays, which the record
        stores as bytes, once per record (the version's windows share these edges)."""
        return {"model": self.model, "version": self.version, "source": self.source,
                "created_at_ms": self.created_at_ms,
                "features": {name: _feature_state(f) for name, f in self.features.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ReferenceProfile:
        """Rebuild a profile from :meth:`to_state` output (arrays or lists)."""
        return cls(state["model"], state["version"], state["source"],
                   int(state["created_at_ms"]),
                   {name: _feature_from_state(f) for name, f in state["features"].items()})

    @classmethod
    def from_json(cls, data: bytes | str) -> ReferenceProfile:
        """Parse :meth:`to_json` output; :class:`ValueError` with a one-line reason for
        anything else (not JSON, a field missing, unknown or of the wrong type)."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a reference profile: not valid JSON: {exc}") from None
        fields = _fields(cls, doc, "profile")
        features = fields["features"]
        if not isinstance(features, dict):
            raise ValueError("not a reference profile: 'features' must be an object")
        return cls(**{**fields, "features": {name: _feature(name, f)
                                             for name, f in features.items()}})


def category_label(value: str | float | int | bool | np.generic) -> str:
    """The category a value counts under; the worker must label window values with this.

    Strings are their own label. Numbers (bools as 0/1) are converted to float64; an
    integral value below 2**53 in magnitude is written as a decimal integer (``3``, ``-2``,
    ``0`` for both zeros), anything else as Python's shortest round-trip ``repr`` of the
    float (``0.5``, ``1e+16``, ``2.5e-07``). So ``3``, ``3.0``, ``np.int8(3)`` and
    ``True + 2`` are one category, and float32 data gives the labels of its float64 values
    (``np.float32(0.1)`` is ``0.10000000149011612``). Missing values (None, NaN, ±inf) have
    no label: :class:`ValueError`.

    >>> [category_label(v) for v in ("DE", 3, 3.0, -0.0, True, 0.5, 1e16, np.float32(0.25))]
    ['DE', '3', '3', '0', '1', '0.5', '1e+16', '0.25']
    """
    if isinstance(value, str):
        return str(value)
    if value is None:
        raise ValueError("None is missing, not a category")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{number!r} is missing, not a category")
    if number.is_integer() and abs(number) < _EXACT_INTEGERS:
        return str(int(number))
    return repr(number)


def category_labels(values: npt.ArrayLike) -> _Objects:
    """:func:`category_label` of each value of a numeric column; None where missing.

    >>> category_labels(np.array([2.0, np.nan, 0.5, 2.0])).tolist()
    ['2', None, '0.5', '2']
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(x)
    distinct, inverse = np.unique(x[finite], return_inverse=True)
    labels = np.array([category_label(v) for v in distinct.tolist()] or [""], dtype=object)
    out = np.full(x.size, None, dtype=object)
    out[finite] = labels[inverse]
    return out


def _feature(name: str, doc: Any) -> FeatureReference:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    cls = CategoricalReference if kind == "categorical" else NumericReference
    return cls(**_fields(cls, doc, f"feature {name!r:.80}"))


def _fields(cls: Any, doc: Any, what: str) -> dict[str, Any]:
    """``doc``'s values for the dataclass ``cls``, checked against its field types
    (lists become tuples); :class:`ValueError` naming the first that does not fit."""
    if not isinstance(doc, dict):
        raise ValueError(f"not a reference profile: {what} must be an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    missing = [name for name, f in fields.items()
               if name not in doc and f.default is dataclasses.MISSING]
    unknown = [name for name in doc if name not in fields]
    if missing or unknown:
        problems = [f"lacks {missing}" if missing else "",
                    f"has unknown fields {unknown!r:.80}" if unknown else ""]
        raise ValueError(f"not a reference profile: {what} "
                         f"{' and '.join(filter(None, problems))}")
    hints = _hints(cls)
    return {name: _typed(hints[name], value, f"{what}: {name!r}") for name, value in doc.items()}


#: The JSON types that a field of each type takes (booleans are no numbers here).
_JSON_TYPES: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (int, float)}


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        return tuple(_typed(typing.get_args(hint)[0], item, where) for item in value)
    if origin is Literal and value in typing.get_args(hint):
        return value
    if type(value) in _JSON_TYPES.get(hint, ()) or origin is Mapping:  # features: one by one
        return value
    expected = {str: "a string", int: "an integer", float: "a number"}.get(
        hint, "a list" if origin is tuple else f"one of {typing.get_args(hint)}")
    raise ValueError(f"not a reference profile: {where} must be {expected}, "
                     f"got {value!r:.80}")
