"""What stays fixed for a model × version × feature while its windows come and go.

A :class:`FeatureProfile` holds a feature's kind and, for numeric features, its frozen bin
edges (coarse, for reported histograms, PSI and JS; fine, for KS and Wasserstein). They
come, in order of precedence, from

1. the version's reference profile (training data, or a production baseline), when the
   worker has one: windows are then binned exactly like the reference;
2. ``DRIFTLINE_BIN_EDGES`` for the feature (coarse edges only);
3. the first ``edge_sample_size`` values of the feature in message order (equal-frequency
   edges), frozen once; windows opened meanwhile are binned when they freeze.

A numeric feature the reference treats as categorical (a low-cardinality number) is
counted by :func:`driftline.models.drift.reference.category_label` of each value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftline.models.drift.reference import (
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
    category_labels,
)
from driftline.models.events.wire import EventBlock, mark_invalid
from driftline.models.windows.accumulators import (
    CategoricalAccumulator,
    NumericAccumulator,
    edges_from_sample,
)

FeatureKind = Literal["numeric", "categorical"]
Accumulator = NumericAccumulator | CategoricalAccumulator
ReferenceLookup = Callable[[str, str], ReferenceProfile | None]
NO_EDGES = np.empty(0, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    histogram_bins: int = 10
    fine_histogram_bins: int = 100
    edge_sample_size: int = 1000
    fixed_edges: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    max_tracked_categories: int = 1000
    relative_accuracy: float = 0.01


class FeatureProfile:
    """Kind and frozen edges of one model × version × feature."""

    __slots__ = ("edges", "fine_edges", "from_numbers", "kind", "provisional", "sample",
                 "tracked")

    def __init__(self, kind: FeatureKind, edges: npt.NDArray[np.float64] | None = None,
                 fine_edges: npt.NDArray[np.float64] = NO_EDGES, *,
                 tracked: Sequence[str] = (), from_numbers: bool = False,
                 provisional: bool = False) -> None:
        self.kind = kind
        self.edges = edges  # None while numeric edges are still being learnt
        self.fine_edges = fine_edges
        self.tracked = tuple(tracked)  # a reference's categories, always counted
        self.from_numbers = from_numbers  # numbers counted as categories
        # Seen only as missing so far: the kind is a guess the first value settles.
        self.provisional = provisional
        self.sample: list[npt.NDArray[np.float64]] = []

    @property
    def learning(self) -> bool:
        return self.kind == "numeric" and self.edges is None

    def new_accumulator(self, config: ProfileConfig) -> Accumulator:
        if self.kind == "categorical":
            return CategoricalAccumulator(config.max_tracked_categories, self.tracked)
        edges = NO_EDGES if self.edges is None else self.edges
        return NumericAccumulator(edges, config.relative_accuracy, self.fine_edges)

    def as_array(self, column: list[Any]) -> npt.NDArray[Any]:
        if self.kind == "numeric":
            # None becomes NaN (missing); booleans become 1.0 / 0.0.
            return np.asarray(column, dtype=np.float64)
        if self.from_numbers:
            return category_labels(np.asarray(column, dtype=np.float64))
        return np.asarray(column, dtype=object)

    def to_state(self) -> list[Any]:
        return [self.kind, self.edges, self.fine_edges, self.tracked, self.from_numbers,
                self.provisional, self.sample]

    @classmethod
    def from_state(cls, state: list[Any]) -> FeatureProfile:
        kind, edges, fine, tracked, from_numbers, provisional, sample = state
        profile = cls(kind, None if edges is None else np.asarray(edges, np.float64),
                      np.asarray(fine, np.float64), tracked=tracked, from_numbers=from_numbers,
                      provisional=provisional)
        profile.sample = [np.asarray(s, np.float64) for s in sample]
        return profile


class FeatureProfiles:
    """The profiles of every model × version × feature on one partition."""

    def __init__(self, config: ProfileConfig, references: ReferenceLookup | None = None) -> None:
        self.config = config
        #: Looks up the live reference of a model version; set by the worker.
        self.references: ReferenceLookup = references or (lambda model, version: None)
        self._profiles: dict[tuple[str, str, str], FeatureProfile] = {}
        # Kinds already checked per model × version: the per-message check is a dict lookup.
        self._settled: dict[tuple[str, str], dict[str, str]] = {}
        # Which reference each model × version's profiles were built from ("" = none).
        self._built_from: dict[tuple[str, str], str] = {}

    def __getitem__(self, key: tuple[str, str, str]) -> FeatureProfile:
        return self._profiles[key]

    def settle_kinds(self, block: EventBlock) -> None:
        """Hold each feature to one kind: the reference's, else the first one seen here.

        A column of the other kind (strings where the feature holds numbers, numbers where
        it holds strings) is dropped from the block: its values become None and their
        positions join ``block.invalid``, so its window counts them as invalid.
        """
        settled = self._settled.setdefault((block.model, block.version), {})
        for name, kind in block.feature_kinds.items():
            if kind == "missing" or settled.get(name) == kind:
                continue
            key = (block.model, block.version, name)
            profile = self._profiles.get(key)
            if profile is None or profile.provisional:
                profile = self._profiles[key] = self._new(key, kind)
            if profile.kind != kind and not profile.from_numbers:
                _drop_column(block, name)
                continue
            settled[name] = kind

    def get(self, model: str, version: str, name: str) -> FeatureProfile:
        """The feature's profile; a feature seen only as missing is provisionally numeric."""
        key = (model, version, name)
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = FeatureProfile("numeric", provisional=True)
        return profile

    def refresh(self, model: str, version: str) -> bool:
        """Rebuild the version's profiles if its reference changed; True if it did.

        Called when a window opens: windows already open keep the edges they have.
        """
        reference = self.references(model, version)
        built_from = reference.profile_id if reference is not None else ""
        if self._built_from.get((model, version), "") == built_from:
            return False
        self._built_from[(model, version)] = built_from
        for key in [k for k in self._profiles if k[:2] == (model, version)]:
            old = self._profiles.pop(key)
            if not old.provisional:  # rebuilt from what the data are, numbers or strings
                self._profiles[key] = self._new(key, "numeric" if old.from_numbers else old.kind)
        self._settled.pop((model, version), None)
        return True

    def maybe_freeze(self, key: tuple[str, str, str], force: bool = False) -> bool:
        """Freeze learnt edges once the sample is big enough (or ``force``); True if frozen."""
        profile = self._profiles[key]
        if not profile.learning:
            return False
        size = sum(len(s) for s in profile.sample)
        if size == 0 or (size < self.config.edge_sample_size and not force):
            return False
        sample = np.concatenate(profile.sample)[: self.config.edge_sample_size]
        profile.edges = edges_from_sample(sample, self.config.histogram_bins)
        profile.fine_edges = edges_from_sample(sample, self.config.fine_histogram_bins)
        profile.sample = []
        return True

    def _new(self, key: tuple[str, str, str], kind: FeatureKind) -> FeatureProfile:
        model, version, name = key
        reference = self.references(model, version)
        feature = reference.features.get(name) if reference is not None else None
        if isinstance(feature, NumericReference):  # strings there are invalid
            return FeatureProfile("numeric", np.asarray(feature.edges, np.float64),
                                  np.asarray(feature.fine_edges, np.float64))
        if isinstance(feature, CategoricalReference):
            return FeatureProfile("categorical", NO_EDGES, tracked=feature.categories,
                                  from_numbers=kind == "numeric")
        fixed = self.config.fixed_edges.get(name)
        if kind == "numeric" and fixed is not None:
            return FeatureProfile(kind, np.asarray(fixed, dtype=np.float64))
        return FeatureProfile(kind, NO_EDGES if kind == "categorical" else None)

    def to_state(self) -> dict[str, Any]:
        return {"profiles": [[*key, p.to_state()] for key, p in self._profiles.items()],
                "built_from": [[*key, ref] for key, ref in self._built_from.items()]}

    def load_state(self, state: dict[str, Any]) -> None:
        for model, version, name, profile in state["profiles"]:
            self._profiles[(model, version, name)] = FeatureProfile.from_state(profile)
        self._built_from = {(m, v): ref for m, v, ref in state["built_from"]}


def _drop_column(block: EventBlock, name: str) -> None:
    column = block.features[name]
    mark_invalid(block, name, [i for i, value in enumerate(column) if value is not None])
    block.features[name] = [None] * len(column)
    block.feature_kinds[name] = "missing"
