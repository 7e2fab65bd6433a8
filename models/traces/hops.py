"""Service chains from spans: per window of event time, each service's operations and each
call between services (a *hop*, caller -> callee) with calls, errors and latency quantiles;
the hops that became slow or started failing, judged by the ``category = "chain"`` rules.

Two steps, as for pipelines, because the traces topic is keyed however the OpenTelemetry
Collector likes (by trace id, or not at all):

* :func:`partials` sums one message's spans per service (its operations, its outgoing
  calls) and window: counts, latency sum and a mergeable quantile sketch. Each service's
  part is forwarded keyed by the service, so its operations and calls meet on one partition.
* :class:`HopPartition` merges those parts per partition, closes windows when its clock
  (the span starts every source partition has reached) passes their end plus the
  lateness, or when the partition has been quiet (a watermark closes what is open), and
  judges each hop against its own first windows:

  - ``hop_latency_p95_ratio``: the window's p95 over the mean p95 of the hop's first
    :data:`BASELINE_WINDOWS` windows with at least :data:`BASELINE_MIN_CALLS` calls;
  - ``hop_error_increase``: its error rate minus theirs (a hop that always fails 3 % of
    its calls is not news; one that starts failing is); ``hop_error_rate`` and
    ``hop_latency_p95_ms`` are absolute levels, off until you set them.

A part forwarded twice is applied once: per source partition the partition remembers the
last source offset applied and the services it carried. Incidents are
``chain:<caller>::<callee>:<metric>``; the caller stands in the place of the model (its
model's name when ``DRIFTLINE_MODELS`` maps a model to it), so a hop's alert sits next to
the alerts of the model that makes the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binom  # type: ignore[import-untyped]

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import Score, evaluate_window
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.traces.spans import SpanBatch, edges
from driftline.models.windows.sketch import QuantileSketch

__all__ = ["BASELINE_MIN_CALLS", "BASELINE_WINDOWS", "CALL", "MAX_PEERS", "OPERATION", "OTHER",
           "HopPartition",
           "HopResult", "HopRow", "Part", "Partial", "partials"]

CALL, OPERATION = "call", "operation"
#: Windows of a hop that make its baseline, each with at least this many calls.
BASELINE_WINDOWS = 5
BASELINE_MIN_CALLS = 20
#: The level of the tests that keep chance out of a hop's verdicts.
ALPHA = 0.001
#: Operations (span names) and callees tracked by name per service; the rest are OTHER.
MAX_PEERS = 200
OTHER = "(other)"
#: A source partition this many windows behind the others no longer holds the clock back.
STALLED_WINDOWS = 10
_LEVELS = (0.5, 0.95, 0.99)
_ENTRY_KINDS = frozenset({"SERVER", "CONSUMER"})


@dataclasses.dataclass(slots=True)
class Partial:
    """Calls of one operation (``kind`` "operation": ``service``, ``peer`` = the span name)
    or one hop (``kind`` "call": caller ``service``, callee ``peer``) in one window."""

    kind: str
    service: str
    peer: str
    window_start: int
    calls: int
    errors: int
    latency_sum_ms: float
    sketch: QuantileSketch

    def merge(self, other: Partial) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.latency_sum_ms += other.latency_sum_ms
        self.sketch.merge(other.sketch)

    def to_state(self) -> list[Any]:
        return [self.kind, self.service, self.peer, self.window_start, self.calls, self.errors,
                self.latency_sum_ms, self.sketch.to_state()]

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> Partial:
        kind, service, peer, start, calls, errors, total, sketch = state
        if kind not in (CALL, OPERATION):
            raise ValueError(f"a span part's kind must be {CALL!r} or {OPERATION!r}, got {kind!r}")
        return cls(kind, str(service), str(peer), int(start), int(calls), int(errors),
                   float(total), QuantileSketch.from_state(sketch))


@dataclasses.dataclass(frozen=True)
class Part:
    """One service's share of one traces message, as forwarded: where it came from (for
    deduplication), its largest span start, and its partials."""

    source: str
    offset: int
    service: str
    event_time: int
    partials: tuple[Partial, ...]

    def to_state(self) -> dict[str, Any]:
        return {"source": self.source, "offset": self.offset, "service": self.service,
                "event_time": self.event_time, "partials": [p.to_state() for p in self.partials]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Part:
        return cls(str(state["source"]), int(state["offset"]), str(state["service"]),
                   int(state["event_time"]),
                   tuple(Partial.from_state(p) for p in state["partials"]))


def partials(batch: SpanBatch, window_ms: int,
             relative_accuracy: float = 0.01) -> dict[str, tuple[int, list[Partial]]]:
    """One message's spans summed per owning service: ``service -> (largest span start,
    partials)``.

    An operation is a span where a service takes work in (kind SERVER or CONSUMER, or a
    root span); a call is a hop :func:`~driftline.models.traces.spans.edges` finds, owned
    by its caller. A span without an end time (negative duration) counts as a call but not
    in the latency. Spans without a service name are left out.
    """
    roots = [not p for p in batch.parent_span_id]
    rows: list[int] = []
    keys: list[tuple[str, str, str]] = []
    for i, (service, kind, name, root) in enumerate(zip(batch.service, batch.kind, batch.name,
                                                          roots, strict=True)):
        if service and (kind in _ENTRY_KINDS or root):
            rows.append(i)
            keys.append((OPERATION, service, name))
    for i, caller, callee in edges(batch):
        rows.append(i)
        keys.append((CALL, caller, callee))
    if not rows:
        return {}
    index = np.array(rows, dtype=np.intp)
    span_starts = batch.start_ms[index]
    starts = span_starts - span_starts % window_ms
    code = {key: n for n, key in enumerate(sorted(set(keys)))}
    groups = np.array([code[k] for k in keys], dtype=np.int64)
    # One group per (key, window): number them, sort once, then slice.
    _, inverse = np.unique(np.stack([groups, starts]), axis=1, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    durations = batch.duration_ms[index]
    errors = batch.error[index]
    latest: dict[str, int] = {}
    parts: dict[str, list[Partial]] = {}
    for members in np.split(order, bounds):
        kind, service, peer = keys[members[0]]
        took = durations[members]
        took = took[took >= 0]
        parts.setdefault(service, []).append(Partial(
            kind, service, peer, int(starts[members[0]]), int(members.size),
            int(errors[members].sum()), float(took.sum()),
            QuantileSketch(relative_accuracy).update(took)))
        latest[service] = max(latest.get(service, 0), int(span_starts[members].max()))
    return {service: (latest[service], parts[service]) for service in sorted(parts)}


@dataclasses.dataclass(frozen=True)
class HopRow:
    """One closed window of one operation or hop: a row of ``service_operations`` (kind
    "operation") or ``service_calls`` (kind "call"); the baseline only for calls."""

    kind: str
    service: str
    peer: str
    window_start: int
    window_end: int
    calls: int
    errors: int
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    baseline_p95_ms: float | None = None
    baseline_error_rate: float | None = None
    #: Calls slower than the baseline's p95 (about 5 % of them on a usual day).
    slow_calls: int | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclasses.dataclass
class HopResult:
    rows: list[HopRow] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    late: int = 0


@dataclasses.dataclass
class _Source:
    """What a partition of the traces topic brought here: its last offset applied, the
    services applied from that offset, and the largest span start it carried."""

    offset: int
    services: list[str]
    reached: int


@dataclasses.dataclass
class _Baseline:
    """A hop's first windows of enough calls, merged: its usual latency and error rate."""

    windows: int = 0
    calls: int = 0
    errors: int = 0
    sketch: QuantileSketch | None = None

    @property
    def ready(self) -> bool:
        return self.windows >= BASELINE_WINDOWS

    @property
    def p95(self) -> float:
        assert self.sketch is not None
        return float(self.sketch.quantiles([0.95])[0])

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def add(self, window: Partial) -> None:
        if self.ready or window.calls < BASELINE_MIN_CALLS or not window.sketch.count:
            return
        self.windows += 1
        self.calls += window.calls
        self.errors += window.errors
        # The window is closed and done with: its sketch becomes (or joins) the baseline's.
        self.sketch = window.sketch if self.sketch is None else self.sketch.merge(window.sketch)

    def to_state(self) -> list[Any]:
        return [self.windows, self.calls, self.errors,
                None if self.sketch is None else self.sketch.to_state()]

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> _Baseline:
        windows, calls, errors, sketch = state
        return cls(int(windows), int(calls), int(errors),
                   None if sketch is None else QuantileSketch.from_state(sketch))


def significant(k: int, n: int, p0: float) -> bool:
    """Whether ``k`` of ``n`` calls is more than chance allows when each is so with
    probability ``p0`` (one-sided binomial test at :data:`ALPHA`; ``p0`` at least 0.1 %, so
    one error on a hop that never failed is not news).

    >>> significant(3, 60, 0.05), significant(12, 60, 0.05)
    (False, True)
    """
    return n > 0 and k > 0 and float(binom.sf(k - 1, n, max(p0, 1e-3))) < ALPHA


class HopPartition:
    """The service chains of one partition of the forwarded topic (see the module doc)."""

    def __init__(self, rules: RulesConfig, window_ms: int, lateness_ms: int,
                 model_of: Mapping[str, str] | None = None) -> None:
        self.rules = rules
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.model_of = dict(model_of or {})
        self.applied_offset = -1
        self.clock = 0
        self.sources: dict[str, _Source] = {}
        #: ``<kind>:<service>`` -> the operations or callees tracked by name.
        self.peers: dict[str, list[str]] = {}
        self.windows: dict[tuple[str, str, str, int], Partial] = {}
        self.baselines: dict[tuple[str, str], _Baseline] = {}
        self.late = 0
        self.incidents = IncidentTracker.from_settings(rules.incidents)

    def apply(self, items: Sequence[tuple[int, Part | int]]) -> HopResult:
        """Apply forwarded parts and watermarks (an int: an event time) in offset order.

        The partition takes the parts' sketches as its windows' (no copy per partial):
        don't apply the same :class:`Part` object to two partitions."""
        result = HopResult()
        for offset, item in items:
            if offset <= self.applied_offset:
                continue  # a replay of this topic
            self.applied_offset = offset
            if isinstance(item, int):
                self.clock = max(self.clock, self._idle_clock(item))
            elif self._fresh(item):
                result.late += self._add(item)
                self.clock = max(self.clock, self._event_clock())
        self.late += result.late
        self._close(result)
        return result

    def _idle_clock(self, at: int) -> int:
        """Where a watermark (written by the worker into a partition quiet for its idle
        close) moves the clock: far enough to close every open window, as a quiet model's
        windows close, and no further, whatever wall-clock time ``at`` it carries. Spans
        replayed from the past (a backfill, a lagging Collector) after a quiet spell are then
        not late; and a live window closes once its traffic stops, not when the wall clock
        passes its end."""
        if not self.windows:
            return self.clock
        return max(k[3] for k in self.windows) + self.window_ms + self.lateness_ms

    def _event_clock(self) -> int:
        """The event time every source partition has reached: the smallest of their largest
        span starts. The forwarder reads the traces topic's partitions at their own pace (a
        backlog after a restart: one may be minutes ahead), and the one behind must not find
        its windows closed. A source more than :data:`STALLED_WINDOWS` windows behind the
        leader (it stopped carrying this partition's services) no longer holds it back."""
        leader = max(s.reached for s in self.sources.values())
        floor = leader - STALLED_WINDOWS * self.window_ms
        return min(s.reached for s in self.sources.values() if s.reached >= floor)

    def _fresh(self, part: Part) -> bool:
        """Whether ``part`` was not applied before (the forwarder is at least once)."""
        last = self.sources.get(part.source)
        if last is None or part.offset > last.offset:
            reached = part.event_time if last is None else max(last.reached, part.event_time)
            self.sources[part.source] = _Source(part.offset, [part.service], reached)
            return True
        if part.offset < last.offset or part.service in last.services:
            return False
        last.services.append(part.service)
        last.reached = max(last.reached, part.event_time)
        return True

    def _add(self, part: Part) -> int:
        horizon = self.clock - self.lateness_ms
        late = 0
        for p in part.partials:
            if p.window_start + self.window_ms <= horizon:
                late += p.calls  # its window is closed and written
                continue
            peer = self._tracked(p.kind, p.service, p.peer)
            key = (p.kind, p.service, peer, p.window_start)
            open_ = self.windows.get(key)
            if open_ is None:  # the partition takes the part's sketch (see apply)
                self.windows[key] = dataclasses.replace(p, peer=peer)
            else:
                open_.merge(p)
        return late

    def _tracked(self, kind: str, service: str, peer: str) -> str:
        """``peer``, or :data:`OTHER` once the service has :data:`MAX_PEERS` others: span
        names with ids in them, or callees named by IP address, must not grow the state
        without bound."""
        known = self.peers.setdefault(f"{kind}:{service}", [])
        if peer in known:
            return peer
        if len(known) >= MAX_PEERS:
            return OTHER
        known.append(peer)
        return peer

    def _close(self, result: HopResult) -> None:
        """Close the windows the clock passed, oldest first: a window's calls are judged
        against the baselines the windows before it made, however many close at once (a
        backlog, a quiet partition's watermark)."""
        horizon = self.clock - self.lateness_ms
        closing: dict[int, list[tuple[str, str, str, int]]] = {}
        for key in self.windows:
            if key[3] + self.window_ms <= horizon:
                closing.setdefault(key[3], []).append(key)
        for start in sorted(closing):
            windows = [self.windows.pop(key) for key in sorted(closing[start])]
            rows = [self._row(w) for w in windows]
            result.rows += rows
            calls: dict[str, list[HopRow]] = {}
            for row in rows:
                if row.kind == CALL:
                    calls.setdefault(row.service, []).append(row)
            for caller in sorted(calls):
                result.alerts += self._judge(caller, start, calls[caller])
            for window in windows:  # after judging: a window is not its own baseline
                if window.kind == CALL:
                    self.baselines.setdefault((window.service, window.peer),
                                              _Baseline()).add(window)

    def _row(self, p: Partial) -> HopRow:
        timed = p.sketch.count
        p50, p95, p99 = (p.sketch.quantiles(_LEVELS).tolist() if timed else (None,) * 3)
        row = HopRow(p.kind, p.service, p.peer, p.window_start, p.window_start + self.window_ms,
                     p.calls, p.errors, p.latency_sum_ms / timed if timed else None, p50, p95, p99)
        base = self.baselines.get((p.service, p.peer)) if p.kind == CALL else None
        if base is None or not base.ready:
            return row
        usual = base.p95
        return dataclasses.replace(row, baseline_p95_ms=usual,
                                   baseline_error_rate=base.error_rate,
                                   slow_calls=p.sketch.count_above(usual) if usual > 0 else None)

    def _judge(self, caller: str, start: int, rows: list[HopRow]) -> list[Alert]:
        model = self.model_of.get(caller, caller)
        scores: list[Score] = []
        reasons: dict[tuple[str, str], str] = {}
        for row in rows:
            def score(metric: str, value: float, row: HopRow = row) -> None:
                scores.append(Score(model, "", row.peer, metric, value, None, 0, row.calls))

            score("hop_error_rate", row.error_rate)
            if row.latency_p95_ms is not None:
                score("hop_latency_p95_ms", row.latency_p95_ms)
            # A window that looks bad is judged only when chance cannot explain it: a p95
            # of 60 heavy-tailed calls is noisy, the count of calls slower than usual is not.
            if (row.baseline_p95_ms and row.latency_p95_ms is not None
                    and row.slow_calls is not None):
                ratio = row.latency_p95_ms / row.baseline_p95_ms
                if (self._good(model, row.peer, "hop_latency_p95_ratio", ratio)
                        or significant(row.slow_calls, row.calls, 0.05)):
                    score("hop_latency_p95_ratio", ratio)
                reasons[(row.peer, "hop_latency_p95_ratio")] = (
                    f"p95 {row.latency_p95_ms:.1f} ms vs {row.baseline_p95_ms:.1f} ms in its "
                    f"first windows, {row.slow_calls:,} of {row.calls:,} calls slower than "
                    "that")
            if row.baseline_error_rate is not None:
                increase = row.error_rate - row.baseline_error_rate
                if (self._good(model, row.peer, "hop_error_increase", increase)
                        or significant(row.errors, row.calls, row.baseline_error_rate)):
                    score("hop_error_increase", increase)
                reasons[(row.peer, "hop_error_increase")] = (
                    f"{row.errors:,} of {row.calls:,} calls failed ({row.error_rate:.1%}) vs "
                    f"{row.baseline_error_rate:.1%} in its first windows")
            reasons[(row.peer, "hop_error_rate")] = f"{row.errors:,} of {row.calls:,} calls failed"
        evaluation = evaluate_window(self.rules, model, "", start, start + self.window_ms, scores,
                                     windows_seen=1_000_000)
        findings = tuple(
            dataclasses.replace(f, reason=f"{f.reason}: {reasons[(f.feature, f.metric)]}")
            if (f.feature, f.metric) in reasons else f for f in evaluation.findings)
        return self.incidents.update(dataclasses.replace(evaluation, findings=findings))

    def _good(self, model: str, callee: str, metric: str, value: float) -> bool:
        rule = self.rules.rule(model, callee, metric)
        return rule is None or rule.severity(value) is None

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"applied_offset": self.applied_offset, "clock": self.clock, "late": self.late,
                "sources": {k: [v.offset, v.services, v.reached]
                            for k, v in self.sources.items()},
                "peers": self.peers,
                "windows": [p.to_state() for p in self.windows.values()],
                "baselines": [[caller, callee, b.to_state()]
                              for (caller, callee), b in self.baselines.items()],
                "incidents": self.incidents.to_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], rules: RulesConfig, window_ms: int,
                   lateness_ms: int, model_of: Mapping[str, str] | None = None) -> HopPartition:
        self = cls(rules, window_ms, lateness_ms, model_of)
        self.applied_offset = int(state["applied_offset"])
        self.clock = int(state["clock"])
        self.late = int(state["late"])
        self.sources = {k: _Source(int(offset), list(services), int(reached))
                        for k, (offset, services, reached) in state["sources"].items()}
        self.peers = {k: list(v) for k, v in state["peers"].items()}
        for p in (Partial.from_state(s) for s in state["windows"]):
            self.windows[(p.kind, p.service, p.peer, p.window_start)] = p
        self.baselines = {(caller, callee): _Baseline.from_state(b)
                          for caller, callee, b in state["baselines"]}
        self.incidents = IncidentTracker.from_dict(state["incidents"], rules.incidents)
        return self
