"""Detection delay and false alarms of driftline's default rules, next to two references.

Seeded synthetic streams with a known change point go through driftline's real code path,
in-process: :class:`~driftline.models.partition.PartitionState` (one-minute event-time
windows, closed by a watermark, judged for drift and for data quality with
``RulesConfig.default()``). Four detectors watch the same events in the same run:

* ``driftline (training ref)``: windows binned on, and scored against, a reference built
  with :func:`~driftline.models.drift.reference_build.build_profile` from 50,000 pre-change values;
* ``driftline (baseline N=5)``: no reference; the first 5 windows become the production
  baseline (fixed mode), and windows are binned on edges learnt from the first values;
* ``p < 0.05 per window``: the training-reference monitor's KS (numeric) or chi-square
  (categorical) p-value, flagged whenever p < 0.05: per feature and window, no gating,
  no FDR correction, no consecutive-window requirement;
* ``river ADWIN``: ``river.drift.ADWIN()`` (delta 0.002, clock 32) fed every event's value
  of a numeric feature; for a categorical feature, the indicator (1.0 / 0.0) of the
  reference's most frequent category. A hit counts in the window of the event that fired it.

Streams: 10 pre-change windows then 20 post-change windows of one feature, per seed:
abrupt mean shifts of 0.25σ, 0.5σ and 1σ (N(0, 1) before), a scale change ×1.5, a gradual
change (each event from N(1, 1) with a probability rising 0.2 per window over 5 windows),
an incremental one (mean +0.1σ per window), a recurring one (+0.5σ for 3 windows, off for
3, ...), a categorical share change (one category 0.2 -> 0.3, the others scaled down) and
a new category at 5%; 1,000 events per window (5,000 for a 0.5σ shift, and 200 for a
quiet model's 0.5σ and 1σ shifts). Stationary
controls: 13 features (8 numeric of assorted shapes, 5 categorical) over many windows
and seeds, nothing changing.

Definitions (also printed and written to the JSON):

* detection delay, in windows = (index of the window whose close produced the first alert
  or flag for the shifted feature at or after the change) - (index of the first window
  containing the change) + 1: catching it at the first changed window is 1. "missed" when
  nothing fires by the end of the stream. driftline's alert is an incident ``open``.
* false alarm = a driftline ``open`` (drift or data quality) or a baseline detector's flag
  for a feature of a
  stationary stream, or for the shifted feature before the change point. The rate is per
  1,000 feature-windows judged: windows a detector could have fired on (driftline: the
  feature had a judged score, i.e. past ``min_windows`` and the baseline windows; the
  p-rule: a p-value existed; ADWIN: every window).

Targets (from the issue): an abrupt 0.5σ mean shift at 1,000 events per window detected
within 2 windows (every seed), and at most 1 false alarm per 10,000 stationary
feature-windows, for driftline's default rules.

    python benchmarks/detection.py [--quick] [--seed 7] [--out benchmarks/results/detection.json]

The default run (20 seeds per scenario; 20 stationary streams × 130 windows × 13 features,
about 30,000 judged feature-windows) takes about a minute on two cores; ``--quick`` a few
seconds. Prints tables (rich) and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import statistics
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.table import Table
from river.drift import ADWIN

from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.monitor import MonitorConfig, MonitorResult
from driftline.models.drift.reference import CategoricalReference, ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.models.events.wire import EventBlock
from driftline.models.partition import PartitionState
from driftline.models.windows.feature_windows import WindowConfig

MODEL, VERSION = "bench", "v1"
WINDOW_MS = 60_000
T0 = 1_764_230_400_000
REFERENCE_SIZE = 50_000
BASELINE_WINDOWS = 5
P_LEVEL = 0.05
TEST_METRICS = ("ks", "chi2")
DETECTORS = {
    "driftline": "driftline (training ref)",
    "driftline_baseline": f"driftline (baseline N={BASELINE_WINDOWS})",
    "p_rule": f"p < {P_LEVEL} per window",
    "adwin": "river ADWIN",
}
DEFINITIONS = {
    "detection_delay_windows": "index of the window whose close produced the first alert/flag "
    "for the shifted feature at or after the change - index of the first changed window + 1 "
    "(1 = caught at the first changed window); missed if none by the end of the stream",
    "false_alarm": "a driftline 'open' alert or a baseline detector's flag for a feature of a "
    "stationary stream, or for the shifted feature before the change point",
    "false_alarm_rate": "false alarms per 1,000 feature-windows judged (windows the detector "
    "could fire on)",
    "adwin_categorical": "ADWIN on a categorical feature is fed the indicator of the "
    "reference's most frequent category",
    "p_rule": "KS / chi-square p-value of the training-reference monitor < 0.05, per feature "
    "per window, no gating, no FDR, no consecutive-window requirement",
}

Kind = Literal["numeric", "categorical"]
#: Values of one window: (rng, k, n) with k = windows since the change (negative before it).
Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


# -- synthetic data ---------------------------------------------------------------------
def mean_shift(delta: float) -> Sampler:
    return lambda rng, k, n: rng.normal(delta if k >= 0 else 0.0, 1.0, n)


def scale_change(factor: float) -> Sampler:
    return lambda rng, k, n: rng.normal(0.0, factor if k >= 0 else 1.0, n)


def gradual(delta: float, ramp: int) -> Sampler:
    """Each event comes from the shifted distribution with a probability rising to 1."""
    def sample(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
        share = min(1.0, (k + 1) / ramp) if k >= 0 else 0.0
        return rng.normal(0.0, 1.0, n) + delta * (rng.random(n) < share)
    return sample


def incremental(step: float) -> Sampler:
    return lambda rng, k, n: rng.normal(step * (k + 1) if k >= 0 else 0.0, 1.0, n)


def recurring(delta: float, period: int) -> Sampler:
    return lambda rng, k, n: rng.normal(
        delta if k >= 0 and (k // period) % 2 == 0 else 0.0, 1.0, n)


def categories(before: Mapping[str, float], after: Mapping[str, float] | None = None) -> Sampler:
    def sample(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
        shares = after if after is not None and k >= 0 else before
        p = np.array(list(shares.values()))
        return rng.choice(np.array(list(shares), dtype=object), n, p=p / p.sum())
    return sample


def with_missing(sampler: Sampler, share: float) -> Sampler:
    def sample(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
        values = sampler(rng, k, n)
        values[rng.random(n) < share] = np.nan
        return values
    return sample


def zipf_shares(n: int, s: float) -> dict[str, float]:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return {f"k{i:02d}": w for i, w in enumerate(weights / weights.sum())}


SHARES = {"a": 0.35, "b": 0.25, "c": 0.20, "d": 0.12, "e": 0.08}
SHARE_UP = {c: 0.30 if c == "c" else p * 0.70 / 0.80 for c, p in SHARES.items()}
NEW_CATEGORY = {**{c: p * 0.95 for c, p in SHARES.items()}, "new": 0.05}


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    kind: Kind
    sampler: Sampler
    events: int = 1000


SCENARIOS = (
    Scenario("abrupt mean +0.25σ", "numeric", mean_shift(0.25)),
    Scenario("abrupt mean +0.5σ", "numeric", mean_shift(0.5)),
    Scenario("abrupt mean +0.5σ", "numeric", mean_shift(0.5), events=5000),
    Scenario("abrupt mean +1σ", "numeric", mean_shift(1.0)),
    # A quiet model: no window reaches min_count alone; spans of merged windows do.
    Scenario("abrupt mean +0.5σ", "numeric", mean_shift(0.5), events=200),
    Scenario("abrupt mean +1σ", "numeric", mean_shift(1.0), events=200),
    Scenario("abrupt scale ×1.5", "numeric", scale_change(1.5)),
    Scenario("gradual to +1σ over 5 windows", "numeric", gradual(1.0, 5)),
    Scenario("incremental +0.1σ per window", "numeric", incremental(0.1)),
    Scenario("recurring +0.5σ, 3 on / 3 off", "numeric", recurring(0.5, 3)),
    Scenario("categorical share 0.2→0.3", "categorical", categories(SHARES, SHARE_UP)),
    Scenario("new category at 5%", "categorical", categories(SHARES, NEW_CATEGORY)),
)
TARGET_SCENARIO = ("abrupt mean +0.5σ", 1000)

STATIONARY: dict[str, tuple[Kind, Sampler]] = {
    "normal": ("numeric", lambda rng, k, n: rng.normal(0.0, 1.0, n)),
    "lognormal": ("numeric", lambda rng, k, n: rng.lognormal(0.0, 1.0, n)),
    "uniform": ("numeric", lambda rng, k, n: rng.uniform(0.0, 1.0, n)),
    "exponential": ("numeric", lambda rng, k, n: rng.exponential(1.0, n)),
    "student_t3": ("numeric", lambda rng, k, n: rng.standard_t(3, n)),
    "bimodal": ("numeric", lambda rng, k, n: rng.normal(0.0, 1.0, n) + 4.0 * (rng.random(n) < 0.3)),
    "rounded_0.1": ("numeric", lambda rng, k, n: np.round(rng.normal(0.0, 1.0, n), 1)),
    "normal_10pct_missing": ("numeric", with_missing(lambda rng, k, n: rng.normal(0, 1, n), 0.1)),
    "cat_5": ("categorical", categories(SHARES)),
    "cat_binary": ("categorical", categories({"yes": 0.9, "no": 0.1})),
    "cat_8_rare": ("categorical", categories(
        {"a": .3, "b": .2, "c": .15, "d": .12, "e": .1, "f": .07, "g": .05, "h": .01})),
    "cat_zipf_40": ("categorical", categories(zipf_shares(40, 1.5))),
    # ~50 categories with a long tail: the top 20 leave ~20 % of values in the reference's rest.
    "cat_zipf_50_tail": ("categorical", categories(zipf_shares(50, 1.0))),
}


# -- driftline and the references, fed the same windows --------------------------------
class Pipeline:
    """One partition's model state (windows, drift, data quality), as a worker runs it (no
    servers)."""

    def __init__(self, references: Callable[[str, str], ReferenceProfile] | None) -> None:
        self.state = PartitionState.new(
            WindowConfig(window_ms=WINDOW_MS, allowed_lateness_ms=0),
            MonitorConfig(baseline_windows=BASELINE_WINDOWS, baseline_mode="fixed"),
            RulesConfig.default(), references)

    def observe(self, index: int, block: EventBlock) -> MonitorResult:
        self.state.windows.settle_kinds(block)
        watermark = EventBlock("watermark", MODEL, "", [T0 + (index + 1) * WINDOW_MS])
        _, _, health = self.state.apply([(2 * index, block), (2 * index + 1, watermark)])
        return health


@dataclasses.dataclass
class Trace:
    """Per (detector, feature): the windows it judged and the windows it fired in."""

    judged: defaultdict[tuple[str, str], list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(list))
    fired: defaultdict[tuple[str, str], list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(list))
    #: driftline incidents opened, per (detector, feature, metric of the opening window).
    opened_by: Counter[tuple[str, str, str]] = dataclasses.field(default_factory=Counter)

    def record(self, detector: str, index: int, judged: set[str], fired: set[str]) -> None:
        for feature in judged:
            self.judged[detector, feature].append(index)
        for feature in fired:
            self.fired[detector, feature].append(index)

    def record_driftline(self, detector: str, index: int, result: MonitorResult) -> None:
        judged = {s.feature for s in result.scores if s.verdict != "not_evaluated"}
        opened = [a for a in result.alerts if a.state == "open"]
        self.record(detector, index, judged, {a.feature for a in opened})
        self.opened_by.update((detector, a.feature, a.metric) for a in opened)


def p_rule_verdicts(result: MonitorResult) -> tuple[set[str], set[str]]:
    tests = [s for s in result.scores if s.metric in TEST_METRICS and s.p_value is not None]
    return ({s.feature for s in tests},
            {s.feature for s in tests if s.p_value is not None and s.p_value < P_LEVEL})


class Detectors:
    """The four detectors of the benchmark, watching one stream."""

    def __init__(self, kinds: Mapping[str, Kind], reference: ReferenceProfile) -> None:
        self.kinds = dict(kinds)
        self.trained = Pipeline(lambda model, version: reference)
        self.baseline = Pipeline(None)
        self.adwins = {name: ADWIN() for name in kinds}
        self.watched = {name: most_frequent(reference, name)
                        for name, kind in kinds.items() if kind == "categorical"}
        self.trace = Trace()

    def observe(self, index: int, columns: Mapping[str, np.ndarray], times: list[int]) -> None:
        block = EventBlock("prediction", MODEL, VERSION, times,
                           features={n: as_wire(v) for n, v in columns.items()},
                           feature_kinds=dict(self.kinds))
        trained = self.trained.observe(index, block)
        self.trace.record_driftline("driftline", index, trained)
        self.trace.record("p_rule", index, *p_rule_verdicts(trained))
        self.trace.record_driftline("driftline_baseline", index,
                                    self.baseline.observe(index, block))
        hits = {name for name, values in columns.items() if self._adwin_fires(name, values)}
        self.trace.record("adwin", index, set(columns), hits)

    def _adwin_fires(self, name: str, values: np.ndarray) -> bool:
        adwin, fired = self.adwins[name], False
        watched = self.watched.get(name)
        stream = (values == watched).astype(np.float64) if watched is not None else values
        for x in stream[~np.isnan(stream)].tolist():
            adwin.update(x)
            fired = fired or adwin.drift_detected
        return fired


def most_frequent(reference: ReferenceProfile, feature: str) -> str:
    categorical = reference.features[feature]
    assert isinstance(categorical, CategoricalReference)
    return categorical.categories[0]


def as_wire(values: np.ndarray) -> list[Any]:
    """A column as the wire decoder hands it over: a list, None for missing."""
    out: list[Any] = values.tolist()
    if values.dtype.kind == "f" and np.isnan(values).any():
        return [None if v != v else v for v in out]
    return out


def run_stream(features: Mapping[str, tuple[Kind, Sampler]], windows: int, change_at: int,
               events: int, rng: np.random.Generator) -> Trace:
    """Feed ``windows`` windows to the detectors; window ``change_at`` is the first changed."""
    sample = {name: sampler(rng, -1, REFERENCE_SIZE) for name, (_, sampler) in features.items()}
    reference = build_profile(MODEL, VERSION, sample, created_at_ms=T0)
    detectors = Detectors({name: kind for name, (kind, _) in features.items()}, reference)
    for i in range(windows):
        times = (T0 + i * WINDOW_MS + np.sort(rng.integers(0, WINDOW_MS, events))).tolist()
        columns = {name: sampler(rng, i - change_at, events)
                   for name, (_, sampler) in features.items()}
        detectors.observe(i, columns, times)
    return detectors.trace


def stream_rng(base_seed: int, name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([base_seed, zlib.crc32(name.encode()), seed])


# -- measures ---------------------------------------------------------------------------
def first_delay(fired: Sequence[int], change_at: int) -> int | None:
    after = [i for i in fired if i >= change_at]
    return after[0] - change_at + 1 if after else None


def count_before(windows: Sequence[int], end: int) -> int:
    return sum(1 for i in windows if i < end)


def delay_summary(delays: Sequence[int | None]) -> dict[str, Any]:
    """Detected runs, and median / max delay with a missed run counted as infinitely late."""
    ranked = [float("inf") if d is None else float(d) for d in delays]
    median, worst = statistics.median(ranked), max(ranked)
    return {"runs": len(delays), "detected": sum(d is not None for d in delays),
            "median": None if median == float("inf") else median,
            "max": None if worst == float("inf") else worst, "delays": list(delays)}


def rate(alarms: int, judged: int, per: int = 1000) -> float | None:
    return alarms / judged * per if judged else None


def run_scenario(scenario: Scenario, seeds: int, windows: int, change_at: int,
                 base_seed: int) -> dict[str, Any]:
    delays: dict[str, list[int | None]] = {d: [] for d in DETECTORS}
    alarms = dict.fromkeys(DETECTORS, 0)
    judged = dict.fromkeys(DETECTORS, 0)
    key = f"{scenario.name}/{scenario.events}"
    for seed in range(seeds):
        trace = run_stream({"x": (scenario.kind, scenario.sampler)}, windows, change_at,
                           scenario.events, stream_rng(base_seed, key, seed))
        for d in DETECTORS:
            delays[d].append(first_delay(trace.fired[d, "x"], change_at))
            alarms[d] += count_before(trace.fired[d, "x"], change_at)
            judged[d] += count_before(trace.judged[d, "x"], change_at)
    return {"scenario": scenario.name, "kind": scenario.kind, "events_per_window": scenario.events,
            "detectors": {d: {**delay_summary(delays[d]), "false_alarms": alarms[d],
                              "judged_before_change": judged[d],
                              "false_alarms_per_1000": rate(alarms[d], judged[d])}
                          for d in DETECTORS}}


def run_stationary(seeds: int, windows: int, events: int, base_seed: int) -> dict[str, Any]:
    alarms: defaultdict[tuple[str, str], int] = defaultdict(int)
    judged: defaultdict[tuple[str, str], int] = defaultdict(int)
    opened_by: Counter[tuple[str, str, str]] = Counter()
    for seed in range(seeds):
        trace = run_stream(STATIONARY, windows, windows, events,
                           stream_rng(base_seed, "stationary", seed))
        opened_by.update(trace.opened_by)
        for (d, feature), fired in trace.fired.items():
            alarms[d, feature] += len(fired)
        for (d, feature), seen in trace.judged.items():
            judged[d, feature] += len(seen)
    return {"streams": seeds, "windows": windows, "events_per_window": events,
            "features": {f: kind for f, (kind, _) in STATIONARY.items()},
            "detectors": {d: stationary_summary(d, alarms, judged) for d in DETECTORS},
            "opened_by_metric": {d: metric_counts(opened_by, d)
                                 for d in ("driftline", "driftline_baseline")}}


def metric_counts(opened_by: Mapping[tuple[str, str, str], int], detector: str) -> dict[str, int]:
    """Incidents opened per metric of the opening window: which rule raised them."""
    counts: Counter[str] = Counter()
    for (d, _, metric), n in opened_by.items():
        if d == detector:
            counts[metric] += n
    return dict(counts.most_common())


def stationary_summary(detector: str, alarms: Mapping[tuple[str, str], int],
                       judged: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    total = sum(alarms.get((detector, f), 0) for f in STATIONARY)
    seen = sum(judged.get((detector, f), 0) for f in STATIONARY)
    return {"feature_windows": seen, "false_alarms": total,
            "per_1000": rate(total, seen), "per_10000": rate(total, seen, 10_000),
            "by_feature": {f: alarms.get((detector, f), 0) for f in STATIONARY}}


def targets(scenarios: Sequence[dict[str, Any]],
            stationary: dict[str, Any]) -> list[dict[str, Any]]:
    name, events = TARGET_SCENARIO
    abrupt = next(s for s in scenarios
                  if (s["scenario"], s["events_per_window"]) == (name, events))
    out = []
    for d in ("driftline", "driftline_baseline"):
        run = abrupt["detectors"][d]
        ok = run["detected"] == run["runs"] and run["max"] is not None and run["max"] <= 2
        out.append({"target": f"{name} at {events:,}/window: max delay ≤ 2 windows",
                    "detector": d, "value": run["max"], "passed": ok})
        per_10k = stationary["detectors"][d]["per_10000"]
        out.append({"target": "stationary: false alarms per 10,000 feature-windows ≤ 1",
                    "detector": d, "value": per_10k,
                    "passed": per_10k is not None and per_10k <= 1.0})
    return out


# -- output -----------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "missed"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.{digits}f}"


HEADERS = {"driftline": "driftline\ntraining ref", "driftline_baseline": "driftline\nbaseline N=5",
           "p_rule": "p < 0.05\nper window", "adwin": "river\nADWIN"}


def scenario_cell(r: dict[str, Any]) -> str:
    return (f"{fmt(r['median'])} / {fmt(r['max'])} ({r['detected']}/{r['runs']})\n"
            f"FA {r['false_alarms']}/{r['judged_before_change']}")


def scenario_table(scenarios: Sequence[dict[str, Any]]) -> Table:
    table = Table("scenario", "events\n/window", *HEADERS.values(),
                  title="Detection delay in windows: median / max (runs detected); "
                  "FA = false alarms / feature-windows judged before the change")
    for s in scenarios:
        table.add_row(s["scenario"], f"{s['events_per_window']:,}",
                      *(scenario_cell(s["detectors"][d]) for d in DETECTORS), end_section=True)
    return table


def stationary_table(stationary: dict[str, Any]) -> Table:
    table = Table("detector", "feature-windows judged", "false alarms", "per 1,000",
                  "per 10,000", title=f"Stationary streams: {stationary['streams']} × "
                  f"{stationary['windows']} windows × {len(STATIONARY)} features, "
                  f"{stationary['events_per_window']:,} events/window")
    for d, label in DETECTORS.items():
        r = stationary["detectors"][d]
        table.add_row(label, f"{r['feature_windows']:,}", str(r["false_alarms"]),
                      fmt(r["per_1000"], 2), fmt(r["per_10000"], 2))
    return table


def feature_table(stationary: dict[str, Any]) -> Table:
    table = Table("feature", "kind", *HEADERS.values(),
                  title="Stationary false alarms by feature (count)")
    for feature, kind in stationary["features"].items():
        table.add_row(feature, kind, *(str(stationary["detectors"][d]["by_feature"][feature])
                                       for d in DETECTORS))
    return table


def report(console: Console, result: dict[str, Any]) -> None:
    console.print(scenario_table(result["scenarios"]))
    console.print(stationary_table(result["stationary"]))
    console.print(feature_table(result["stationary"]))
    for d, counts in result["stationary"]["opened_by_metric"].items():
        opened = ", ".join(f"{m} {n}" for m, n in counts.items()) or "none"
        console.print(f"{DETECTORS[d]}: stationary incidents opened by metric: {opened}")
    for t in result["targets"]:
        verdict = "[green]PASS[/]" if t["passed"] else "[red]FAIL[/]"
        console.print(f"{verdict}  {t['target']} — {DETECTORS[t['detector']]}: "
                      f"{fmt(t['value'], 2)}")
    for name, text in DEFINITIONS.items():
        console.print(f"[dim]{name}: {text}[/]")


# -- entry point ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RunSize:
    seeds: int
    windows: int = 30
    change_at: int = 10
    stationary_seeds: int = 20
    stationary_windows: int = 130
    stationary_events: int = 1000


DEFAULT_SIZE = RunSize(seeds=20)
QUICK_SIZE = RunSize(seeds=4, stationary_seeds=3, stationary_windows=40)


def run(size: RunSize, base_seed: int) -> dict[str, Any]:
    began = time.perf_counter()
    scenarios = [run_scenario(s, size.seeds, size.windows, size.change_at, base_seed)
                 for s in SCENARIOS]
    stationary = run_stationary(size.stationary_seeds, size.stationary_windows,
                                size.stationary_events, base_seed)
    return {"config": {**dataclasses.asdict(size), "base_seed": base_seed,
                       "reference_size": REFERENCE_SIZE, "window_ms": WINDOW_MS,
                       "baseline_windows": BASELINE_WINDOWS, "rules": "RulesConfig.default()"},
            "definitions": DEFINITIONS, "scenarios": scenarios, "stationary": stationary,
            "targets": targets(scenarios, stationary),
            "runtime_s": round(time.perf_counter() - began, 1),
            "machine": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "river": importlib.metadata.version("river")}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and windows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detection.json"))
    args = parser.parse_args(argv)
    result = run(QUICK_SIZE if args.quick else DEFAULT_SIZE, args.seed)
    console = Console()
    if not console.is_terminal:  # piped: rich would wrap the tables at 80 columns
        console = Console(width=120)
    report(console, result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    console.print(f"{result['runtime_s']} s; wrote {args.out}")


if __name__ == "__main__":
    main()
