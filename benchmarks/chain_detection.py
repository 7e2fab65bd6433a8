"""How the service-chain rules judge hops: false alarms on steady hops, how soon a slowdown
or a hop that starts failing is flagged, and what summing spans costs.

Each stream is one hop (its own caller service) with ``calls`` calls a window and latencies
drawn from a lognormal (``sigma`` 0.5: a steady service; 1.0: a heavy tail, p95 about 5x
the median). Spans go through :func:`driftline.models.traces.hops.partials` and a
:class:`~driftline.models.traces.hops.HopPartition` with the built-in rules, exactly as the
worker judges them; a stream's incidents are its ``open`` alerts.

    python benchmarks/chain_detection.py [--streams 100] [--windows 60] [--out FILE]

Scenarios: steady (every incident is a false alarm); the hop 1.5x, 2x or 3x slower from
window 30; the hop failing 10 % of its calls from window 30 (it failed 0.5 % before). For
each: streams with an incident, false alarms per 10,000 hop-windows, windows from the change
to the incident (median, 90th percentile). And the cost of the forwarder's work per span:
decoding an OTLP protobuf message alone, against decoding and summing it per service and
window (a ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from driftline.models.alerting.rules import RulesConfig
from driftline.models.traces.hops import HopPartition, Part, partials
from driftline.models.traces.spans import SpanBatch, decode_otlp_proto
from driftline.streams.demo.traces import ChainTracer

W = 60_000
T0 = 1_764_230_400_000
CHANGE_AT = 30


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    slower: float = 1.0  # latency factor from CHANGE_AT
    failing: float | None = None  # error rate from CHANGE_AT


SCENARIOS = (Scenario("steady"), Scenario("1.5x slower", 1.5), Scenario("2x slower", 2.0),
             Scenario("3x slower", 3.0), Scenario("fails 10 % of calls", failing=0.1))


def hop_batch(rng: np.random.Generator, caller: str, start: int, n: int, sigma: float,
              factor: float, error_rate: float) -> SpanBatch:
    return SpanBatch(
        trace_id=[f"{i + 1:032x}" for i in range(n)], span_id=[f"{i + 1:016x}" for i in range(n)],
        parent_span_id=["00000000000000aa"] * n, service=[caller] * n, name=["call"] * n,
        kind=["CLIENT"] * n, peer_service=["db"] * n,
        start_ms=np.sort(rng.integers(start, start + W, n)),
        duration_ms=rng.lognormal(np.log(10.0), sigma, n) * factor,
        error=rng.random(n) < error_rate)


def run(scenario: Scenario, streams: int, windows: int, calls: int, sigma: float,
        seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    rules = RulesConfig.default()
    flagged, delays, false_alarms, judged = 0, [], 0, 0
    for s in range(streams):
        partition = HopPartition(rules, W, 10_000)
        caller = f"svc{s}"
        opened: list[int] = []
        for w in range(windows + 2):
            changed = w >= CHANGE_AT
            factor = scenario.slower if changed else 1.0
            errors = scenario.failing if changed and scenario.failing is not None else 0.005
            start = T0 + w * W
            batch = hop_batch(rng, caller, start, calls if w < windows else 1, sigma, factor,
                              errors)
            latest, parts = partials(batch, W)[caller]
            result = partition.apply([(w, Part("t/0", w, caller, latest, tuple(parts)))])
            opened += [(a.window_start - T0) // W for a in result.alerts if a.state == "open"]
        judged += windows - 5  # windows after the baseline
        changes = scenario.slower != 1.0 or scenario.failing is not None
        early = [w for w in opened if not changes or w < CHANGE_AT]
        false_alarms += len(early)
        late = [w for w in opened if changes and w >= CHANGE_AT]
        if late:
            flagged += 1
            delays.append(late[0] - CHANGE_AT)
    return {"scenario": scenario.name, "calls": calls, "sigma": sigma, "streams": streams,
            "flagged": flagged,
            "false_alarms_per_10k": round(10_000 * false_alarms / max(1, judged), 2),
            "delay_median": float(np.median(delays)) if delays else None,
            "delay_p90": float(np.quantile(delays, 0.9)) if delays else None}


def cost(requests: int = 2_000, repeats: int = 5) -> dict[str, float]:
    """Seconds per span to decode a message, and to decode and sum it, best of ``repeats``."""
    tracer = ChainTracer("ranker", seed=1)
    message = tracer.record(T0, T0 + 5_000, requests)
    spans = len(decode_otlp_proto(message))
    decode, both = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        batch = decode_otlp_proto(message)
        decode.append(time.perf_counter() - t)
        t = time.perf_counter()
        partials(decode_otlp_proto(message), W)
        both.append(time.perf_counter() - t)
    del batch
    return {"spans": spans, "decode_us_per_span": 1e6 * min(decode) / spans,
            "decode_and_sum_us_per_span": 1e6 * min(both) / spans,
            "ratio": min(both) / min(decode)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [run(scenario, args.streams, args.windows, calls, sigma, args.seed)
            for calls in (60, 500) for sigma in (0.5, 1.0) for scenario in SCENARIOS]
    table = Table(title=f"hops judged by the built-in rules ({args.streams} streams x "
                        f"{args.windows} windows, change at window {CHANGE_AT})")
    for name in ("scenario", "calls/window", "sigma", "flagged", "false alarms /10k",
                 "delay median", "delay p90"):
        table.add_column(name)
    for r in rows:
        table.add_row(r["scenario"], str(r["calls"]), str(r["sigma"]),
                      f"{r['flagged']}/{r['streams']}", str(r["false_alarms_per_10k"]),
                      str(r["delay_median"]), str(r["delay_p90"]))
    console = Console()
    console.print(table)
    spent = cost()
    console.print(f"forwarder cost: decode {spent['decode_us_per_span']:.2f} µs/span, decode "
                  f"and sum {spent['decode_and_sum_us_per_span']:.2f} µs/span "
                  f"({spent['ratio']:.2f}x decoding alone, {spent['spans']:,} spans a message)")
    if args.out:
        args.out.write_text(json.dumps({"scenarios": rows, "cost": spent}, indent=1))


if __name__ == "__main__":
    main()
