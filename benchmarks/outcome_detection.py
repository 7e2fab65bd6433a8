"""How the business-outcome rules judge: false alarms on healthy traffic, and how soon a
worse challenger or a fall against the baseline is flagged.

Each stream is one model with a champion (v1) and a challenger (v2) serving side by side,
``--per-window`` predictions each per window, reporting ``converted`` (a Bernoulli rate) and
``revenue`` (a lognormal amount when converted). Windows go through
:class:`driftline.models.outcomes.monitor.OutcomeMonitor` with the built-in rules, exactly
as the worker judges them; a stream's incidents are its ``open`` alerts.

    python benchmarks/outcome_detection.py [--streams 100] [--windows 200] [--out FILE]

Scenarios: A/A (equal versions: every incident is a false alarm); the challenger converting
10 %, 20 % or 30 % less from its first window; the challenger going 20 % worse at window
100; v1 alone falling 30 % at window 100 (against its baseline). For each: streams with an
incident of the kind, false alarms per 10,000 version-windows, and windows from the change
to the incident (median, 90th percentile).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from driftline.models.alerting.rules import RulesConfig
from driftline.models.outcomes.compare import Summary
from driftline.models.outcomes.monitor import OutcomeConfig, OutcomeMonitor

W = 60_000
RATE = 0.05
NAMES = ("converted", "revenue")


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    challenger: float | None  # v2's conversion relative to v1 (None: v1 alone)
    change_at: int = 0  # window from which the change holds
    v1_after: float = 1.0  # v1's conversion relative to before, from change_at


SCENARIOS = (
    Scenario("A/A: equal versions", 1.0),
    Scenario("challenger 10 % worse", 0.9),
    Scenario("challenger 20 % worse", 0.8),
    Scenario("challenger 30 % worse", 0.7),
    Scenario("challenger 20 % worse from window 100", 0.8, change_at=100),
    Scenario("v1 alone falls 30 % at window 100", None, change_at=100, v1_after=0.7),
)


def window(rng: np.random.Generator, n: int, rate: float) -> dict[str, Summary]:
    converted = int(rng.binomial(n, rate))
    amounts = rng.lognormal(3.0, 0.6, converted)
    return {"converted": Summary(n, float(converted), float(converted)),
            "revenue": Summary(n, float(amounts.sum()), float((amounts ** 2).sum()))}


def stream(scenario: Scenario, seed: int, windows: int, n: int) -> list[tuple[int, str, str]]:
    """(window, metric, version) of each incident opened."""
    rng = np.random.default_rng(seed)
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    monitor.reported("m", NAMES)
    opened = []
    for w in range(windows):
        changed = w >= scenario.change_at
        v1 = RATE * (scenario.v1_after if changed else 1.0)
        versions = {"v1": window(rng, n, v1)}
        if scenario.challenger is not None:
            relative = scenario.challenger if changed else 1.0
            versions["v2"] = window(rng, n, RATE * relative)
        _, alerts = monitor.judge("m", w * W, versions)
        opened += [(w, a.metric, a.version) for a in alerts if a.state == "open"]
    return opened


def run(scenario: Scenario, streams: int, windows: int, n: int) -> dict[str, Any]:
    """An incident on the changed version after the change is right (the challenger's
    fall may also show against its own baseline); any other is a false alarm."""
    changed = scenario.v1_after != 1.0 or scenario.challenger not in (None, 1.0)
    wanted = "outcome_change" if scenario.challenger is None else "challenger_test"
    culprit = "v1" if scenario.challenger is None else "v2"
    hits, delays, false_alarms = 0, [], 0
    for seed in range(streams):
        opened = stream(scenario, seed, windows, n)
        right = [(w, metric) for w, metric, version in opened
                 if changed and version == culprit and w >= scenario.change_at]
        false_alarms += len(opened) - len(right)
        first = [w for w, metric in right if metric == wanted]
        if first:
            hits += 1
            delays.append(min(first) - scenario.change_at)
    version_windows = streams * windows * (1 if scenario.challenger is None else 2)
    return {"scenario": scenario.name, "streams": streams, "detected": hits,
            "false_alarms_per_10k": 1e4 * false_alarms / version_windows,
            "delay_median": float(np.median(delays)) if delays else None,
            "delay_p90": float(np.percentile(delays, 90)) if delays else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--per-window", type=int, default=2_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [run(s, args.streams, args.windows, args.per_window) for s in SCENARIOS]
    table = Table(title=f"outcome rules, {args.streams} streams x {args.windows} windows, "
                        f"{args.per_window} predictions per version-window, {RATE:.0%} "
                        "conversion")
    for column in ("scenario", "detected", "false alarms / 10k", "delay median", "delay p90"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["scenario"], f"{r['detected']}/{r['streams']}",
                      f"{r['false_alarms_per_10k']:.2f}", str(r["delay_median"]),
                      str(r["delay_p90"]))
    Console().print(table)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2), "utf-8")


if __name__ == "__main__":
    main()
