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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from driftline.models.events.wire import EventBlock
from driftline.models.windows.accumulators import (
    CategoricalAccumulator,
    NumericAccumulator,
    update_rows,
)
from driftline.models.windows.distinct import DistinctCounter, request_hashes
from driftline.models.windows.feature_profiles import (
    NO_EDGES,
    Accumulator,
    FeatureKind,
    FeatureProfile,
    FeatureProfiles,
    ProfileConfig,
    ReferenceLookup,
)
from driftline.models.windows.sketch import QuantileSketch

QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_ONE_KEPT = np.ones(1, dtype=np.bool_)
RangeLookup = Callable[[str, str], "tuple[float, float] | None"]
_ACCUMULATORS: dict[str, type[NumericAccumulator] | type[CategoricalAccumulator]] = {
    "NumericAccumulator": NumericAccumulator, "CategoricalAccumulator": CategoricalAccumulator}


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    window_ms: int = 60_000
    allowed_lateness_ms: int = 10_000
    histogram_bins: int = 10
    fine_histogram_bins: int = 100
    edge_sample_size: int = 1000
    fixed_edges: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)
    top_k_categories: int = 20
    max_tracked_categories: int = 1000
    relative_accuracy: float = 0.01

    @property
    def profiles(self) -> ProfileConfig:
        return ProfileConfig(self.histogram_bins, self.fine_histogram_bins,
                             self.edge_sample_size, self.fixed_edges,
                             self.max_tracked_categories, self.relative_accuracy)


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
    #: For drift scores, not stored as such: the percentile histogram, and every
    #: tracked category's count (a reference's categories included, zeros too).
    fine_bin_edges: tuple[float, ...] = ()
    fine_bin_counts: tuple[int, ...] = ()
    tracked_counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: Values dropped for their type (see EventBlock.invalid): counted in ``missing_count``
    #: too, so ``count - missing_count`` stays the values the distribution holds.
    invalid_count: int = 0

    @property
    def present(self) -> int:
        """Values the distribution holds: neither missing nor dropped as invalid."""
        return self.count - self.missing_count

    #: Every event of the version's window, whether its message carried this feature or not
    #: (``count`` holds only those whose message did): the denominator of completeness.
    window_events: int = 0
    #: Timeliness of the version's window (the same on each of its rows), in ms: p50, p95
    #: and max of broker time - event time, and of read time - broker time, over its events
    #: whose messages had them; and the events of the version that arrived too late for
    #: their own window since the version's previous window closed.
    event_delay_ms: tuple[float, ...] = ()
    processing_delay_ms: tuple[float, ...] = ()
    late_arrivals: int = 0
    #: Values outside the range the rules declare for the feature (none declared: 0).
    outside_range_count: int = 0
    #: Distinct request ids among the version's window events, estimated (HyperLogLog,
    #: ~1.6 % error): ``window_events`` minus this are duplicates. None: no ids counted.
    distinct_requests: int | None = None


@dataclasses.dataclass(frozen=True)
class LateEvents:
    """Events of one message that arrived after their window had closed."""

    model: str
    version: str
    window_start: int
    offset: int
    count: int


class _Window:
    """Accumulators of one model × version × window; numeric ones wait for frozen edges."""

    __slots__ = ("event_delays", "events", "features", "invalid", "outside", "pending",
                 "processing_delays", "requests")

    def __init__(self) -> None:
        self.features: dict[str, Accumulator] = {}
        # Values seen before the feature's edges were frozen; binned once they are.
        self.pending: dict[str, list[npt.NDArray[np.float64]]] = {}
        self.events = 0
        self.invalid: dict[str, int] = {}
        self.event_delays: QuantileSketch | None = None
        self.processing_delays: QuantileSketch | None = None
        self.outside: dict[str, int] = {}  # per feature: values outside its declared range
        self.requests: DistinctCounter | None = None  # distinct request ids (duplicates)


class PartitionWindows:
    """Open windows and event time of one source partition.

    Examples
    --------
    >>> from driftline.models.events.wire import EventBlock
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

    def __init__(self, config: WindowConfig, references: ReferenceLookup | None = None,
                 ranges: RangeLookup | None = None) -> None:
        self.config = config
        #: The valid range the rules declare for a model's feature, if any.
        self.ranges: RangeLookup = ranges or (lambda model, feature: None)
        self.applied_offset = -1
        self.event_time: dict[str, int] = {}  # per model
        self.profiles = FeatureProfiles(config.profiles, references)
        self._windows: dict[tuple[str, str, int], _Window] = {}
        self._closed: list[FeatureWindowRow] = []  # closed since the last close_ready()
        # Late events per model × version since one of its windows last closed.
        self._late_since: dict[tuple[str, str], int] = {}
        #: Per model: the latest event time of its predictions (late ones too, watermarks
        #: not), and the version that sent it; how a silent model is told apart.
        self.last_event: dict[str, tuple[int, str]] = {}
        #: Called with each prediction message as it is applied, and with each window's
        #: rows the moment it closes: whoever watches them sees the same sequence however
        #: the messages were batched.
        self.on_message: Callable[[EventBlock], None] | None = None
        self.on_closed: Callable[[list[FeatureWindowRow]], None] | None = None

    def settle_kinds(self, block: EventBlock) -> None:
        """Drop, as invalid, a column of a kind its feature does not hold (see
        :meth:`FeatureProfiles.settle_kinds`)."""
        self.profiles.settle_kinds(block)

    # -- update -------------------------------------------------------------------
    def apply(self, blocks: Sequence[tuple[int, EventBlock]]) -> list[LateEvents]:
        """Apply messages (offset, block) in offset order; return the late events found.

        Blocks must have passed :meth:`settle_kinds`. Label blocks are ignored here.
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
            if self.on_message is not None:
                self.on_message(block)
            model = block.model
            latest = max(block.event_time)
            known = self.last_event.get(model)
            if known is None or latest >= known[0]:
                self.last_event[model] = (latest, block.version)
            closed_through = self._closed_through(model)
            if len(block) == 1:  # single-event message: plain ints are faster than numpy
                t = block.event_time[0]
                first = t - t % w
                if first + w <= closed_through:
                    late.append(LateEvents(model, block.version, first, offset, 1))
                    self._count_late(model, block.version, 1)
                    continue
                self._advance(model, t)
                keep = _ONE_KEPT
            else:
                times = np.asarray(block.event_time, dtype=np.int64)
                starts = times - times % w
                is_late = starts + w <= closed_through
                if is_late.any():
                    late += self._late_rows(block, offset, starts[is_late])
                    self._count_late(model, block.version, int(is_late.sum()))
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

    def _count_late(self, model: str, version: str, n: int) -> None:
        key = (model, version)
        self._late_since[key] = self._late_since.get(key, 0) + n

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
        all_kept = bool(keep.all())
        if not all_kept and not keep.any():
            return
        times = np.asarray([t for b, _ in parts for t in b.event_time], dtype=np.int64)[keep]
        starts = times - times % self.config.window_ms
        window_starts = np.unique(starts)
        singles = len(keep) == len(parts) > 1
        for start in window_starts:
            if (model, version, int(start)) not in self._windows:
                # A new window takes the version's reference as it is now.
                self.profiles.refresh(model, version)
                self._windows[(model, version, int(start))] = _Window()
        # One window start (the usual case) needs no selection of events.
        selections = ([(window_starts[0], slice(None))] if len(window_starts) == 1 else
                      [(start, starts == start) for start in window_starts])
        numeric: dict[int, tuple[list[NumericAccumulator], list[npt.NDArray[np.float64]]]] = {}
        for start, in_window in selections:
            self._windows[(model, version, int(start))].events += (
                len(times) if isinstance(in_window, slice) else int(in_window.sum()))
        if any(b.broker_time_ms is not None for b, _ in parts):
            self._add_delays(model, version, parts, keep, times, selections)
        self._add_requests(model, version, parts, keep, selections)
        names = _feature_names(b for b, _ in parts)
        for name in names:
            if any(name in b.invalid for b, _ in parts):
                self._count_invalid(model, version, name, parts, keep, selections)
            profile = self.profiles.get(model, version, name)
            column = _concat_column(parts, name, singles)
            values = profile.as_array(column)
            if not all_kept:
                values = values[keep]
            if profile.learning:  # the sample that fixes the edges is taken in message order
                profile.sample.append(values[~np.isnan(values)])
            declared = self.ranges(model, name) if profile.kind == "numeric" else None
            if declared is not None:
                outside = (values < declared[0]) | (values > declared[1])  # NaN: neither
                for window, n in self._per_window(model, version, selections, outside):
                    window.outside[name] = window.outside.get(name, 0) + n
            for start, in_window in selections:
                window = self._windows[(model, version, int(start))]
                acc = self._accumulator(window, name, profile)
                if isinstance(acc, NumericAccumulator) and profile.kind == "categorical":
                    # Opened before a reference made these numbers categories: still numbers.
                    numbers = np.asarray(column, dtype=np.float64)
                    acc.update((numbers if all_kept else numbers[keep])[in_window])
                    continue
                # Moments and counts need no edges; the histogram is filled when they freeze.
                if isinstance(acc, NumericAccumulator):
                    accs, rows = numeric.setdefault(int(start), ([], []))
                    accs.append(acc)
                    rows.append(values[in_window])
                else:
                    acc.update(values[in_window])
                if profile.learning:
                    window.pending.setdefault(name, []).append(
                        values[in_window][~np.isnan(values[in_window])])
        for accs, rows in numeric.values():
            update_rows(accs, np.stack(rows))
        for name in names:
            self._maybe_freeze(model, version, name)

    def _add_delays(self, model: str, version: str,
                    parts: list[tuple[EventBlock, npt.NDArray[np.bool_]]],
                    keep: npt.NDArray[np.bool_], times: npt.NDArray[np.int64],
                    selections: list[tuple[Any, Any]]) -> None:
        sizes = [len(b) for b, _ in parts]
        broker = np.repeat(np.array([b.broker_time_ms for b, _ in parts], np.float64),
                           sizes)[keep]  # None becomes NaN: not measured
        read = np.repeat(np.array([b.received_ms for b, _ in parts], np.float64), sizes)[keep]
        event_delays, processing = broker - times, read - broker
        for start, in_window in selections:
            window = self._windows[(model, version, int(start))]
            for name, delays in (("event_delays", event_delays[in_window]),
                                 ("processing_delays", processing[in_window])):
                delays = delays[~np.isnan(delays)]
                if delays.size:
                    sketch = getattr(window, name)
                    if sketch is None:
                        sketch = QuantileSketch(self.config.relative_accuracy)
                        setattr(window, name, sketch)
                    sketch.update(delays)

    def _add_requests(self, model: str, version: str,
                      parts: list[tuple[EventBlock, npt.NDArray[np.bool_]]],
                      keep: npt.NDArray[np.bool_], selections: list[tuple[Any, Any]]) -> None:
        ids = [rid for b, _ in parts for rid in b.request_id]
        if len(ids) != len(keep):
            return  # a message without request ids: nothing to count
        hashes = request_hashes(ids)[keep]
        for start, in_window in selections:
            window = self._windows[(model, version, int(start))]
            if window.requests is None:
                window.requests = DistinctCounter()
            window.requests.add_hashes(hashes[in_window])

    def _count_invalid(self, model: str, version: str, name: str,
                       parts: list[tuple[EventBlock, npt.NDArray[np.bool_]]],
                       keep: npt.NDArray[np.bool_],
                       selections: list[tuple[Any, Any]]) -> None:
        invalid = np.zeros(len(keep), dtype=np.bool_)
        at = 0
        for block, _ in parts:
            invalid[[at + i for i in block.invalid.get(name, ())]] = True
            at += len(block)
        for window, n in self._per_window(model, version, selections, invalid[keep]):
            window.invalid[name] = window.invalid.get(name, 0) + n

    def _per_window(self, model: str, version: str, selections: list[tuple[Any, Any]],
                    flags: npt.NDArray[np.bool_]) -> Iterator[tuple[_Window, int]]:
        """Each window the flagged events fall in, with how many of them do."""
        for start, in_window in selections:
            if n := int(flags[in_window].sum()):
                yield self._windows[(model, version, int(start))], n

    def _accumulator(self, window: _Window, name: str, profile: FeatureProfile) -> Accumulator:
        acc = window.features.get(name)
        if acc is None:
            acc = window.features[name] = profile.new_accumulator(self.config.profiles)
        elif (isinstance(acc, CategoricalAccumulator) != (profile.kind == "categorical")
              and acc.count == acc.missing_count):
            # The feature was seen only as missing until now: carry those over.
            old, acc = acc, profile.new_accumulator(self.config.profiles)
            acc.update(np.full(old.count, None if profile.kind == "categorical" else np.nan,
                               dtype=object if profile.kind == "categorical" else np.float64))
            window.features[name] = acc
        return acc

    def _maybe_freeze(self, model: str, version: str, name: str, force: bool = False) -> None:
        if not self.profiles.maybe_freeze((model, version, name), force):
            return
        profile = self.profiles[(model, version, name)]
        assert profile.edges is not None
        for (m, v, _), window in self._windows.items():
            acc = window.features.get(name) if (m, v) == (model, version) else None
            if isinstance(acc, NumericAccumulator) and not acc.edges.size:
                pending = window.pending.pop(name, [])
                acc.set_edges(profile.edges, np.concatenate(pending) if pending else NO_EDGES,
                              profile.fine_edges)

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
        rows: list[FeatureWindowRow] = []
        for model, version, start in keys:
            window = self._windows[(model, version, start)]
            for name in list(window.pending):
                self._maybe_freeze(model, version, name, force=True)
            del self._windows[(model, version, start)]
            timeliness = _Timeliness(_delay_summary(window.event_delays),
                                     _delay_summary(window.processing_delays),
                                     self._late_since.pop((model, version), 0))
            closed = [self._row(model, version, start, name, acc, window, timeliness)
                      for name, acc in sorted(window.features.items())]
            if closed and self.on_closed is not None:
                self.on_closed(closed)
            rows += closed
        self._closed += rows

    def _row(self, model: str, version: str, start: int, name: str,
             acc: Accumulator, window: _Window, timeliness: _Timeliness) -> FeatureWindowRow:
        end = start + self.config.window_ms
        invalid = window.invalid.get(name, 0)
        event_delay, processing_delay, late = timeliness
        if isinstance(acc, CategoricalAccumulator):
            cats, counts, other = acc.top_k(self.config.top_k_categories)
            nan = float("nan")
            return FeatureWindowRow(
                model, version, name, "categorical", start, end,
                count=acc.count, missing_count=acc.missing_count,
                mean=nan, variance=nan, min=nan, max=nan, quantiles=(), bin_edges=(),
                bin_counts=(), categories=tuple(cats),
                category_counts=tuple(counts.tolist()), other_count=int(other),
                tracked_counts=acc.category_counts, invalid_count=invalid,
                window_events=window.events, distinct_requests=_distinct(window),
                event_delay_ms=event_delay, processing_delay_ms=processing_delay,
                late_arrivals=late)
        s = acc.summary(QUANTILE_LEVELS)
        # tolist() makes Python floats and ints in one call, not one per element.
        return FeatureWindowRow(
            model, version, name, "numeric", start, end,
            count=s.count, missing_count=s.missing_count,
            mean=s.mean, variance=s.variance, min=s.min, max=s.max,
            quantiles=tuple(s.quantiles.tolist()),
            bin_edges=tuple(acc.edges.tolist()),
            bin_counts=tuple(s.bin_counts.tolist()) if len(acc.edges) else (),
            categories=(), category_counts=(), other_count=0,
            fine_bin_edges=tuple(acc.fine_edges.tolist()),
            fine_bin_counts=tuple(s.fine_bin_counts.tolist()) if len(acc.fine_edges) else (),
            invalid_count=invalid, window_events=window.events,
            distinct_requests=_distinct(window), event_delay_ms=event_delay,
            processing_delay_ms=processing_delay,
            late_arrivals=late, outside_range_count=window.outside.get(name, 0))

    # -- checkpoint ---------------------------------------------------------------
    @property
    def open_windows(self) -> int:
        return len(self._windows)

    def to_bytes(self) -> bytes:
        """Serialise the whole state (orjson; numpy arrays as lists)."""
        return orjson.dumps(self.to_state(), option=orjson.OPT_SERIALIZE_NUMPY)

    def to_state(self) -> dict[str, Any]:
        """The whole state as plain data (numpy arrays inside: dump with orjson's numpy option).

        Call :meth:`close_ready` first: rows closed but not yet taken are not part of it.
        """
        if self._closed:
            raise RuntimeError("take closed rows with close_ready() before checkpointing")
        return {
            "applied_offset": self.applied_offset,
            "event_time": self.event_time,
            "profiles": self.profiles.to_state(),
            "windows": [[*key, {n: [type(a).__name__, a.to_state()] for n, a in w.features.items()},
                         w.pending, w.events, w.invalid, _sketch_state(w.event_delays),
                         _sketch_state(w.processing_delays), w.outside,
                         None if w.requests is None else w.requests.registers]
                        for key, w in self._windows.items()],
            "late_since": [[m, v, n] for (m, v), n in self._late_since.items()],
            "last_event": [[m, t, v] for m, (t, v) in self.last_event.items()],
        }

    @classmethod
    def from_bytes(cls, config: WindowConfig, data: bytes,
                   references: ReferenceLookup | None = None,
                   ranges: RangeLookup | None = None) -> PartitionWindows:
        return cls.from_state(config, orjson.loads(data), references, ranges)

    @classmethod
    def from_state(cls, config: WindowConfig, state: dict[str, Any],
                   references: ReferenceLookup | None = None,
                   ranges: RangeLookup | None = None) -> PartitionWindows:
        self = cls(config, references, ranges)
        self.applied_offset = state["applied_offset"]
        self.event_time = state["event_time"]
        self.profiles.load_state(state["profiles"])
        self._late_since = {(m, v): n for m, v, n in state.get("late_since", [])}
        self.last_event = {m: (t, v) for m, t, v in state.get("last_event", [])}
        for model, version, start, features, pending, *counts in state["windows"]:
            window = _Window()
            if counts:  # states written before completeness was counted have none
                window.events, window.invalid = counts[0], dict(counts[1])
            if len(counts) > 2:  # ... and before timeliness
                window.event_delays = _sketch(counts[2])
                window.processing_delays = _sketch(counts[3])
            if len(counts) > 4:  # ... and before declared ranges
                window.outside = dict(counts[4])
            if len(counts) > 5 and counts[5] is not None:  # ... and before duplicates
                window.requests = DistinctCounter(np.asarray(counts[5], dtype=np.uint8))
            for name, (kind, acc_state) in features.items():
                window.features[name] = _ACCUMULATORS[kind].from_state(acc_state)
            window.pending = {n: [np.asarray(p, np.float64) for p in parts]
                              for n, parts in pending.items()}
            self._windows[(model, version, start)] = window
        return self


_DELAY_LEVELS = (0.5, 0.95, 1.0)


class _Timeliness(NamedTuple):
    """One window's delays and late arrivals, computed once for all its rows."""

    event_delay_ms: tuple[float, ...]
    processing_delay_ms: tuple[float, ...]
    late_arrivals: int


def _distinct(window: _Window) -> int | None:
    return None if window.requests is None else round(window.requests.estimate())


def _delay_summary(sketch: QuantileSketch | None) -> tuple[float, ...]:
    return () if sketch is None or not sketch.count else tuple(
        sketch.quantiles(_DELAY_LEVELS).tolist())


def _sketch_state(sketch: QuantileSketch | None) -> dict[str, Any] | None:
    return None if sketch is None else sketch.to_state()


def _sketch(state: dict[str, Any] | None) -> QuantileSketch | None:
    return None if state is None else QuantileSketch.from_state(state)


def _feature_names(blocks: Iterable[EventBlock]) -> list[str]:
    names: dict[str, None] = {}
    for block in blocks:
        names.update(dict.fromkeys(block.features))
        if block.invalid:  # a feature all of whose values were dropped is still counted
            names.update(dict.fromkeys(block.invalid))
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

