"""Which hop downstream of a service explains its slowdown, from the hops' judged windows.

The service-chain processor publishes each service's closed call windows (its outgoing
hops with their p95 and their baseline); every worker keeps the last few per service. When
a model's service latency incident opens, :func:`explain_latency` names the downstream hop
whose p95 rose the most over the incident's windows, or says that every traced hop ran as
usual, so the slowdown is in the service itself.

>>> w = [HopWindow("ranker", "feature-store", 0, 60_000, 900, 0, 84.0, 9.0, 0.0),
...      HopWindow("ranker", "postgres", 0, 60_000, 900, 0, 3.1, 3.0, 0.0)]
>>> explain_latency("ranker", w, 0, 60_000)
'slowest hop downstream: ranker → feature-store, p95 84.0 ms vs 9.0 ms usual (9.3×)'
>>> explain_latency("ranker", w[1:], 0, 60_000)
'hops downstream as usual (postgres): the slowdown is in ranker itself'
>>> explain_latency("ranker", [], 0, 60_000)
''
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from driftline.models.traces.hops import CALL, HopRow

__all__ = ["SLOW_RATIO", "HopWindow", "board_records", "explain_latency"]

#: A hop's p95 at least this many times its baseline counts as slowed down.
SLOW_RATIO = 1.5


@dataclasses.dataclass(frozen=True)
class HopWindow:
    """One closed window of one hop, as published for explanations."""

    service: str
    callee: str
    window_start: int
    window_end: int
    calls: int
    errors: int
    p95_ms: float | None
    baseline_p95_ms: float | None
    baseline_error_rate: float | None

    @property
    def ratio(self) -> float | None:
        if not self.baseline_p95_ms or self.p95_ms is None:
            return None
        return self.p95_ms / self.baseline_p95_ms

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> HopWindow:
        return cls(str(doc["service"]), str(doc["callee"]), int(doc["window_start"]),
                   int(doc["window_end"]), int(doc["calls"]), int(doc["errors"]),
                   _optional(doc["p95_ms"]), _optional(doc["baseline_p95_ms"]),
                   _optional(doc["baseline_error_rate"]))


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def board_records(rows: Sequence[HopRow]) -> dict[str, list[dict[str, Any]]]:
    """Closed call rows grouped per caller, as the JSON documents to publish."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.kind == CALL:
            out.setdefault(r.service, []).append(dataclasses.asdict(HopWindow(
                r.service, r.peer, r.window_start, r.window_end, r.calls, r.errors,
                r.latency_p95_ms, r.baseline_p95_ms, r.baseline_error_rate)))
    return out


def explain_latency(service: str, windows: Sequence[HopWindow], since: int, until: int) -> str:
    """One clause for a latency alert of ``service`` over event time ``[since, until)``: the
    downstream hop that slowed the most, or that none did; ``""`` when none is traced."""
    worst: dict[str, HopWindow] = {}
    for w in windows:
        if w.service != service or w.window_end <= since or w.window_start >= until:
            continue
        best = worst.get(w.callee)
        if best is None or _rise(w) > _rise(best):
            worst[w.callee] = w
    if not worst:
        return ""
    slow = sorted((w for w in worst.values() if (w.ratio or 0.0) >= SLOW_RATIO),
                  key=_rise, reverse=True)
    if not slow:
        return (f"hops downstream as usual ({', '.join(sorted(worst))}): the slowdown is in "
                f"{service} itself")
    top = slow[0]
    assert top.p95_ms is not None and top.baseline_p95_ms is not None and top.ratio is not None
    text = (f"slowest hop downstream: {service} → {top.callee}, p95 {top.p95_ms:.1f} ms vs "
            f"{top.baseline_p95_ms:.1f} ms usual ({top.ratio:.1f}×)")
    if len(slow) > 1:
        text += "; slower too: " + ", ".join(f"{w.callee} ({w.ratio:.1f}×)" for w in slow[1:])
    return text


def _rise(w: HopWindow) -> float:
    """How many milliseconds the hop's p95 rose over its baseline (unknown: no rise)."""
    if w.p95_ms is None or w.baseline_p95_ms is None:
        return float("-inf")
    return w.p95_ms - w.baseline_p95_ms
