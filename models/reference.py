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
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

ReferenceSource = Literal["training", "baseline"]


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
    #: At :data:`models.windows.QUANTILE_LEVELS`.
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

    @property
    def present(self) -> int:
        return self.count - self.missing_count


FeatureReference = NumericReference | CategoricalReference


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
        doc = dataclasses.asdict(self)
        doc["features"] = {name: dataclasses.asdict(f) for name, f in self.features.items()}
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes | str) -> ReferenceProfile:
        doc: dict[str, Any] = orjson.loads(data)
        features = {name: _feature(f) for name, f in doc.pop("features").items()}
        return cls(features=features, **doc)


def category_label(value: float) -> str:
    """How a number is named as a category: ``3.0`` -> ``"3"``, ``0.5`` -> ``"0.5"``.

    Reference builder and worker both use it, so a low-cardinality numeric feature is
    counted under the same names on both sides.

    >>> [category_label(v) for v in (3.0, -0.0, 0.5, 1e21)]
    ['3', '0', '0.5', '1e+21']
    """
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def category_labels(values: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
    """:func:`category_label` of each value (NaN -> None), one call per distinct value."""
    out = np.full(values.shape, None, dtype=object)
    present = ~np.isnan(values)
    if present.any():
        distinct, inverse = np.unique(values[present], return_inverse=True)
        labels = np.array([category_label(float(v)) for v in distinct], dtype=object)
        out[present] = labels[inverse]
    return out


def _feature(doc: dict[str, Any]) -> FeatureReference:
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    if fields.get("kind") == "categorical":
        return CategoricalReference(**fields)
    return NumericReference(**fields)
