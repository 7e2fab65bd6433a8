"""Event-time tumbling windows of feature distributions for the models on one partition.

:class:`PartitionWindows` is the whole state one worker keeps for one source partition:
the open windows per model × version × window start, each holding one accumulator per
feature, the frozen histogram edges per model × version × feature, each model's event
time, and the offset of the last message applied. It is pure (numpy only), so it is
tested and benchmarked without an event loop, and it round-trips through
:meth:`PartitionWindows.to_bytes` so the worker can checkpoint it.

Event time and lateness, per model (messages are keyed by model, so a model's events are
in offset order on one partition; one model's backfill or clock never makes another
model's events late):

* a model's event time is the largest event time seen for it so far;
* its window ``[start, start + w)`` closes once ``event time - allowed lateness >= start + w``;
* an event whose window has already closed when its message arrives is *late*: it is not
  added anywhere, but counted in a :class:`LateEvents` row (one per message and window),
  so late data is visible, never silently dropped.

Lateness is judged against the event time *before* the event's own message, and a
message's events are applied together, so the outcome depends only on the order of
messages — never on how the worker happened to batch them — and a replay after a crash
reproduces it exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from models.accumulators import CategoricalAccumulator, NumericAccumulator, edges_from_sample
from models.wire import BadMessage, EventBlock

FeatureKind = Literal["numeric", "categorical"]
QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_NO_EDGES = np.empty(0, dtype=np.float64)
_ONE_KEPT = np.ones(1, dtype=np.bool_)
_ACCUMULATORS: dict[str, type[NumericAccumulator] | type[CategoricalAccumulator]] = {
    "NumericAccumulator": NumericAccumulator, "CategoricalAccumulator": CategoricalAccumulator}


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    window_ms: int = 60_000
    allowed_lateness_ms: int = 10_000
    histogram_bins: int = 10
    edge_sample_size: int = 1000
    fixed_edges: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    top_k_categories: int = 20
    max_tracked_categories: int = 1000
    relative_accuracy: float = 0.01


@dataclasses.dataclass(frozen=True)
class FeatureWindowRow:
    """One closed window of one feature: what lands in ClickHouse ``feature_windows``."""

    model: str
    version: str
    feature: str
    kind: FeatureKind
    window_start: int
    window_end: int
    count: int
    missing_count: int
    mean: float
    variance: float
    min: float
    max: float
    quantiles: tuple[float, ...]
    bin_edges: tuple[float, ...]
    bin_counts: tuple[int, ...]
    categories: tuple[str, ...]
    category_counts: tuple[int, ...]
    other_count: int


@dataclasses.dataclass(frozen=True)
class LateEvents:
    """Events of one message that arrived after their window had closed."""

    model: str
    version: str
    window_start: int
    offset: int
    count: int


class _Profile:
    """What stays fixed for a model × version × feature: its kind and its bin edges."""

    __slots__ = ("edges", "kind", "provisional", "sample")

    def __init__(self, kind: FeatureKind, edges: npt.NDArray[np.float64] | None = None,
                 provisional: bool = False) -> None:
        self.kind = kind
        self.edges = edges  # None while numeric edges are still being learnt
        self.sample: list[npt.NDArray[np.float64]] = []
        # A feature seen only as missing so far: its kind is a guess the first value settles.
        self.provisional = provisional

    @property
    def sample_size(self) -> int:
        return sum(len(s) for s in self.sample)


class _Window:
    """Accumulators of one model × version × window; numeric ones wait for frozen edges."""

    __slots__ = ("features", "pending")

    def __init__(self) -> None:
        self.features: dict[str, NumericAccumulator | CategoricalAccumulator] = {}
        # Values seen before the feature's edges were frozen; binned once they are.
        self.pending: dict[str, list[npt.NDArray[np.float64]]] = {}


class PartitionWindows:
    """Open windows and event time of one source partition.

    Examples
    --------
    >>> from models.wire import EventBlock
    >>> state = PartitionWindows(WindowConfig(window_ms=1000, allowed_lateness_ms=0))
    >>> block = EventBlock("prediction", "m", "v1", [0, 10, 999],
    ...                    features={"x": [1.0, 2.0, None]},
    ...                    feature_kinds={"x": "numeric"})
    >>> state.apply([(0, block)])
    []
    >>> state.apply([(1, EventBlock("watermark", "", "", [1000]))])
    []
    >>> [(r.feature, r.count, r.missing_count, r.mean) for r in state.close_ready()]
    [('x', 3, 1, 1.5)]
    """

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self.applied_offset = -1
        self.event_time: dict[str, int] = {}  # per model
        self._profiles: dict[tuple[str, str, str], _Profile] = {}
        self._windows: dict[tuple[str, str, int], _Window] = {}
        self._closed: list[FeatureWindowRow] = []  # closed since the last close_ready()
        # Kinds already checked per model × version: the per-message check is a dict lookup.
        self._settled: dict[tuple[str, str], dict[str, str]] = {}

    # -- validation ---------------------------------------------------------------
    def check_kinds(self, block: EventBlock) -> None:
        """Raise :class:`BadMessage` if a feature changes kind; learn kinds seen first here."""
        settled = self._settled.setdefault((block.model, block.version), {})
        for name, kind in block.feature_kinds.items():
            if kind == "missing" or settled.get(name) == kind:
                continue
            settled[name] = kind  # undone below if it was wrong
            profile = self._profiles.get((block.model, block.version, name))
            if profile is None:
                self._profiles[(block.model, block.version, name)] = self._new_profile(name, kind)
            elif profile.provisional:
                self._settle_kind(block.model, block.version, name, kind)
            elif profile.kind != kind:
                settled[name] = profile.kind
                raise BadMessage(f"feature {name!r} of {block.model}/{block.version} was "
                                 f"{profile.kind} and now carries {kind} values")

    def _settle_kind(self, model: str, version: str, name: str, kind: FeatureKind) -> None:
        profile = self._profiles[(model, version, name)] = self._new_profile(name, kind)
        for (m, v, _), window in self._windows.items():
            old = window.features.get(name) if (m, v) == (model, version) else None
            if old is not None:  # it has only counted missing values: carry them over
                new = window.features[name] = self._new_accumulator(profile)
                missing = np.full(old.missing_count, None if kind == "categorical" else np.nan)
                new.update(missing.astype(object if kind == "categorical" else np.float64))

    def _new_profile(self, name: str, kind: FeatureKind) -> _Profile:
        fixed = self.config.fixed_edges.get(name)
        if kind == "numeric" and fixed is not None:
            return _Profile(kind, np.asarray(fixed, dtype=np.float64))
        return _Profile(kind, _NO_EDGES if kind == "categorical" else None)

    # -- update -------------------------------------------------------------------
    def apply(self, blocks: Sequence[tuple[int, EventBlock]]) -> list[LateEvents]:
        """Apply messages (offset, block) in offset order; return the late events found.

        Blocks must have passed :meth:`check_kinds`. Label blocks are ignored here.
        """
        late: list[LateEvents] = []
        segment: list[tuple[int, EventBlock]] = []
        for offset, block in blocks:
            if block.kind == "watermark":
                late += self._apply_segment(segment)
                segment = []
                # A watermark names one model, or moves every model of the partition.
                for model in [block.model] if block.model else list(self.event_time):
                    self._advance(model, block.event_time[0])
                self._close_passed()
            elif block.kind == "prediction":
                segment.append((offset, block))
            self.applied_offset = max(self.applied_offset, offset)
        late += self._apply_segment(segment)
        return late

    def _apply_segment(self, segment: list[tuple[int, EventBlock]]) -> list[LateEvents]:
        if not segment:
            return []
        w = self.config.window_ms
        late: list[LateEvents] = []
        groups: dict[tuple[str, str], list[tuple[EventBlock, npt.NDArray[np.bool_]]]] = {}
        oldest_open = self._oldest_open_windows()
        for offset, block in segment:
            model = block.model
            closed_through = self._closed_through(model)
            if len(block) == 1:  # single-event message: plain ints are faster than numpy
                t = block.event_time[0]
                first = t - t % w
                if first + w <= closed_through:
                    late.append(LateEvents(model, block.version, first, offset, 1))
                    continue
                self._advance(model, t)
                keep = _ONE_KEPT
            else:
                times = np.asarray(block.event_time, dtype=np.int64)
                starts = times - times % w
                is_late = starts + w <= closed_through
                if is_late.any():
                    late += self._late_rows(block, offset, starts[is_late])
                    if is_late.all():
                        continue
                self._advance(model, int(times.max()))
                keep = ~is_late
                first = int(starts[keep].min())
            groups.setdefault((model, block.version), []).append((block, keep))
            oldest = oldest_open[model] = min(oldest_open.get(model, first), first)
            if oldest + w <= self._closed_through(model):
                # A window closes at this message: apply what came before it, then close,
                # so what closes when never depends on how messages were batched.
                self._accumulate_groups(groups)
                groups = {}
                self._close_passed()
                oldest_open = self._oldest_open_windows()
        self._accumulate_groups(groups)
        return late

    def _advance(self, model: str, event_time: int) -> None:
        self.event_time[model] = max(self.event_time.get(model, event_time), event_time)

    def _closed_through(self, model: str) -> int:
        return self.event_time.get(model, -1) - self.config.allowed_lateness_ms

    def _oldest_open_windows(self) -> dict[str, int]:
        oldest: dict[str, int] = {}
        for model, _, start in self._windows:
            oldest[model] = min(oldest.get(model, start), start)
        return oldest

    def _accumulate_groups(
            self, groups: dict[tuple[str, str], list[tuple[EventBlock, npt.NDArray[np.bool_]]]]
    ) -> None:
        for (model, version), parts in groups.items():
            self._accumulate(model, version, parts)

    @staticmethod
    def _late_rows(block: EventBlock, offset: int,
                   late_starts: npt.NDArray[np.int64]) -> list[LateEvents]:
        starts, counts = np.unique(late_starts, return_counts=True)
        return [LateEvents(block.model, block.version, int(s), offset, int(c))
                for s, c in zip(starts, counts, strict=True)]

    def _accumulate(self, model: str, version: str,
                    parts: list[tuple[EventBlock, npt.NDArray[np.bool_]]]) -> None:
        keep = np.concatenate([mask for _, mask in parts])
        if not keep.any():
            return
        times = np.asarray([t for b, _ in parts for t in b.event_time], dtype=np.int64)[keep]
        starts = times - times % self.config.window_ms
        window_starts = np.unique(starts)
        singles = len(keep) == len(parts) > 1
        for name in _feature_names(b for b, _ in parts):
            profile = self._profiles.get((model, version, name))
            column = _concat_column(parts, name, singles)
            if profile is None:  # only ever missing so far: count it as numeric for now
                profile = self._profiles[(model, version, name)] = _Profile(
                    "numeric", provisional=True)
            values = _as_array(column, profile.kind)[keep]
            learning = profile.kind == "numeric" and profile.edges is None
            if learning:  # the sample that fixes the edges is taken in message order
                profile.sample.append(values[~np.isnan(values)])
            for start in window_starts:
                window = self._windows.setdefault((model, version, int(start)), _Window())
                in_window = values[starts == start]
                acc = window.features.get(name)
                if acc is None:
                    acc = window.features[name] = self._new_accumulator(profile)
                # Moments and counts need no edges; the histogram is filled when they freeze.
                acc.update(in_window)
                if learning:
                    window.pending.setdefault(name, []).append(in_window[~np.isnan(in_window)])
            self._maybe_freeze(model, version, name, profile)

    def _new_accumulator(self, profile: _Profile) -> NumericAccumulator | CategoricalAccumulator:
        if profile.kind == "categorical":
            return CategoricalAccumulator(self.config.max_tracked_categories)
        edges = _NO_EDGES if profile.edges is None else profile.edges
        return NumericAccumulator(edges, self.config.relative_accuracy)

    def _maybe_freeze(self, model: str, version: str, name: str, profile: _Profile,
                      force: bool = False) -> None:
        if profile.kind != "numeric" or profile.edges is not None:
            return
        size = profile.sample_size
        if size == 0 or (size < self.config.edge_sample_size and not force):
            return
        sample = np.concatenate(profile.sample)[: self.config.edge_sample_size]
        profile.edges = edges_from_sample(sample, self.config.histogram_bins)
        profile.sample = []
        for (m, v, _), window in self._windows.items():
            if (m, v) == (model, version) and name in window.features:
                pending = window.pending.pop(name, [])
                acc = window.features[name]
                assert isinstance(acc, NumericAccumulator)
                acc.set_edges(profile.edges, np.concatenate(pending) if pending else _NO_EDGES)

    # -- closing ------------------------------------------------------------------
    def close_ready(self) -> list[FeatureWindowRow]:
        """Return (and forget) the rows of every window the event time has passed."""
        self._close_passed()
        rows, self._closed = self._closed, []
        return rows

    def close_all(self) -> list[FeatureWindowRow]:
        """Close every open window (a quiet partition); later events for them are late."""
        for model in self._oldest_open_windows():
            self._advance(model, self.idle_watermark(model) or -1)
        return self.close_ready()

    def idle_watermark(self, model: str) -> int | None:
        """The event time that would close every open window of ``model``, if it has any."""
        starts = [s for m, _, s in self._windows if m == model]
        if not starts:
            return None
        return max(starts) + self.config.window_ms + self.config.allowed_lateness_ms

    def _close_passed(self) -> None:
        w = self.config.window_ms
        keys = sorted(k for k in self._windows if k[2] + w <= self._closed_through(k[0]))
        rows = self._closed
        for model, version, start in keys:
            window = self._windows[(model, version, start)]
            for name in list(window.pending):
                self._maybe_freeze(model, version, name,
                                   self._profiles[(model, version, name)], force=True)
            del self._windows[(model, version, start)]
            rows += [self._row(model, version, start, name, acc)
                     for name, acc in sorted(window.features.items())]

    def _row(self, model: str, version: str, start: int, name: str,
             acc: NumericAccumulator | CategoricalAccumulator) -> FeatureWindowRow:
        end = start + self.config.window_ms
        if isinstance(acc, CategoricalAccumulator):
            cats, counts, other = acc.top_k(self.config.top_k_categories)
            nan = float("nan")
            return FeatureWindowRow(
                model, version, name, "categorical", start, end,
                count=acc.count, missing_count=acc.missing_count,
                mean=nan, variance=nan, min=nan, max=nan, quantiles=(), bin_edges=(),
                bin_counts=(), categories=tuple(cats),
                category_counts=tuple(int(c) for c in counts), other_count=int(other))
        s = acc.summary(QUANTILE_LEVELS)
        return FeatureWindowRow(
            model, version, name, "numeric", start, end,
            count=s.count, missing_count=s.missing_count,
            mean=s.mean, variance=s.variance, min=s.min, max=s.max,
            quantiles=tuple(float(q) for q in s.quantiles),
            bin_edges=tuple(float(e) for e in acc.edges),
            bin_counts=tuple(int(c) for c in s.bin_counts) if len(acc.edges) else (),
            categories=(), category_counts=(), other_count=0)

    # -- checkpoint ---------------------------------------------------------------
    @property
    def open_windows(self) -> int:
        return len(self._windows)

    def to_bytes(self) -> bytes:
        """Serialise the whole state (orjson; numpy arrays as lists).

        Call :meth:`close_ready` first: rows closed but not yet taken are not part of it.
        """
        if self._closed:
            raise RuntimeError("take closed rows with close_ready() before checkpointing")
        state = {
            "applied_offset": self.applied_offset,
            "event_time": self.event_time,
            "profiles": [[*key, p.kind, None if p.edges is None else p.edges, p.sample,
                          p.provisional]
                         for key, p in self._profiles.items()],
            "windows": [[*key, {n: [type(a).__name__, a.to_state()] for n, a in w.features.items()},
                         w.pending] for key, w in self._windows.items()],
        }
        return orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_bytes(cls, config: WindowConfig, data: bytes) -> PartitionWindows:
        state = orjson.loads(data)
        self = cls(config)
        self.applied_offset = state["applied_offset"]
        self.event_time = state["event_time"]
        for model, version, name, kind, edges, sample, provisional in state["profiles"]:
            profile = _Profile(kind, None if edges is None else np.asarray(edges, np.float64),
                               provisional)
            profile.sample = [np.asarray(s, np.float64) for s in sample]
            self._profiles[(model, version, name)] = profile
        for model, version, start, features, pending in state["windows"]:
            window = _Window()
            for name, (kind, acc_state) in features.items():
                window.features[name] = _ACCUMULATORS[kind].from_state(acc_state)
            window.pending = {n: [np.asarray(p, np.float64) for p in parts]
                              for n, parts in pending.items()}
            self._windows[(model, version, start)] = window
        return self


def _feature_names(blocks: Iterable[EventBlock]) -> list[str]:
    names: dict[str, None] = {}
    for block in blocks:
        names.update(dict.fromkeys(block.features))
    return list(names)


def _concat_column(parts: list[tuple[EventBlock, npt.NDArray[np.bool_]]], name: str,
                   singles: bool) -> list[Any]:
    if singles:  # every part is a single-event message
        return [values[0] if (values := b.features.get(name)) else None for b, _ in parts]
    if len(parts) == 1:
        block = parts[0][0]
        return block.features.get(name) or [None] * len(block)
    column: list[Any] = []
    for block, _ in parts:
        column.extend(block.features.get(name) or [None] * len(block))
    return column


def _as_array(column: list[Any], kind: FeatureKind) -> npt.NDArray[Any]:
    if kind == "numeric":
        # None becomes NaN (missing); booleans become 1.0 / 0.0.
        return np.asarray(column, dtype=np.float64)
    return np.asarray(column, dtype=object)
