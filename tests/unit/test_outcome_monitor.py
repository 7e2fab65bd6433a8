"""OutcomeMonitor: when a window's outcomes are judged, against what, and which incidents
that opens: a version against its own baseline, a challenger against the champion."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from driftline.models import state_codec
from driftline.models.alerting.rules import RulesConfig
from driftline.models.outcomes.compare import Summary
from driftline.models.outcomes.monitor import MAX_NAMES, OutcomeConfig, OutcomeMonitor

W = 60_000
N = 2_000


def conversions(rng: np.random.Generator, rate: float, n: int = N) -> Summary:
    hits = int(rng.binomial(n, rate))
    return Summary(n, float(hits), float(hits))


def closed(model: str, version: str, start: int, count: int = N) -> Any:
    """What observe_closed reads of a closed window's row."""
    return SimpleNamespace(model=model, version=version, window_start=start, count=count)


def run(monitor: OutcomeMonitor, rates: dict[str, list[float]], seed: int = 1,
        name: str = "converted") -> tuple[list[Any], list[Any]]:
    """Feed windows of conversion rates per version (same length lists) and judge each."""
    rng = np.random.default_rng(seed)
    alerts, rows = [], []
    monitor.reported("m", [name])
    for w in range(len(next(iter(rates.values())))):
        window = {version: {name: conversions(rng, series[w])}
                  for version, series in rates.items() if series[w] is not None}
        got_rows, got_alerts = monitor.judge("m", w * W, window)
        rows += got_rows
        alerts += got_alerts
    return rows, alerts


def states(alerts: list[Any]) -> list[tuple[str, str, int]]:
    return [(a.dedup_key, a.state, a.window_start // W) for a in alerts]


def test_a_fall_against_the_baseline_opens_one_incident_and_resolves() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    rates = [0.10] * 8 + [0.05] * 3 + [0.10] * 6
    _, alerts = run(monitor, {"v1": rates})
    key = "outcome:m:v1:outcome.converted:outcome_change"
    assert states(alerts) == [(key, "open", 9), (key, "resolved", 13)]
    assert "converted per prediction" in alerts[0].summary and "vs baseline" in alerts[0].summary


def test_a_stationary_version_opens_nothing() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    rows, alerts = run(monitor, {"v1": [0.10] * 60}, seed=7)
    assert alerts == []
    assert len([r for r in rows if r.against == "baseline"]) == 60 - 5  # after the baseline
    assert {r.verdict for r in rows} <= {"ok", "not_evaluated"}


def test_a_worse_challenger_is_flagged_against_the_first_version_and_an_equal_one_is_not() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    rows, alerts = run(monitor, {"v1": [0.10] * 30, "v2": [None] + [0.08] * 29,
                                 "v3": [None] * 2 + [0.10] * 28}, seed=3)
    keys = {a.dedup_key for a in alerts if a.state == "open"}
    assert keys == {"outcome:m:v2:outcome.converted:challenger_test"}
    champion_rows = [r for r in rows if r.against == "champion"]
    assert {r.against_version for r in champion_rows} == {"v1"}
    assert {r.version for r in champion_rows} == {"v2", "v3"}
    last = max((r for r in champion_rows if r.version == "v2"), key=lambda r: r.window_start)
    assert last.windows == 29 and last.span_start == W
    assert last.difference_high is not None and last.difference_high < 0
    assert last.relative_change is not None and -0.3 < last.relative_change < -0.1


def test_a_declared_champion_is_the_one_compared_with() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(champion=lambda model: "v2"), RulesConfig.default())
    rows, alerts = run(monitor, {"v1": [0.10] * 20, "v2": [None] + [0.12] * 19}, seed=5)
    assert {(r.version, r.against_version) for r in rows if r.against == "champion"} == {
        ("v1", "v2")}
    assert {a.dedup_key for a in alerts} == {"outcome:m:v1:outcome.converted:challenger_test"}


def test_an_outcome_where_more_is_worse_takes_the_rise() -> None:
    rules = RulesConfig.from_toml('''
[models."m".features."outcome.chargebacks".metrics.outcome_change]
effect_metric = "outcome_rise"
''')
    falling = OutcomeMonitor(OutcomeConfig(), rules)
    _, alerts = run(falling, {"v1": [0.10] * 8 + [0.05] * 4}, name="chargebacks")
    assert alerts == []
    rising = OutcomeMonitor(OutcomeConfig(), rules)
    _, alerts = run(rising, {"v1": [0.10] * 8 + [0.15] * 4}, name="chargebacks")
    assert [a.state for a in alerts] == ["open"]


def test_a_replayed_window_changes_nothing() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    run(monitor, {"v1": [0.10] * 8})
    assert monitor.judge("m", 3 * W, {"v1": {"converted": Summary(N, 1.0, 1.0)}}) == ([], [])


def test_a_checkpoint_resumes_exactly() -> None:
    rates = {"v1": [0.10] * 24, "v2": [None] + [0.08] * 23}
    straight = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    expected = run(straight, rates, seed=9)

    first = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    head = {v: s[:12] for v, s in rates.items()}
    rows, alerts = run(first, head, seed=9)
    saved = state_codec.decode(state_codec.encode(first.to_state()))
    second = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    second.load_state(saved)
    rng = np.random.default_rng(9)
    for w in range(12):  # the generator's draws of the first half
        for v in rates:
            if rates[v][w] is not None:
                conversions(rng, rates[v][w])
    for w in range(12, 24):
        got_rows, got_alerts = second.judge("m", w * W, {
            v: {"converted": conversions(rng, s[w])} for v, s in rates.items()})
        rows += got_rows
        alerts += got_alerts
    assert (rows, alerts) == expected


def test_due_waits_for_the_labels_topic_and_forgets_windows_of_models_without_outcomes() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(judge_after_ms=lambda m: 2 * W),
                             RulesConfig.default())
    monitor.observe_closed([closed("m", "v1", w * W) for w in range(5)])
    monitor.observe_closed([closed("quiet", "v1", w * W) for w in range(5)])
    now = {"m": 10 * W, "quiet": 10 * W}
    assert monitor.due(now) == []  # the labels topic has not been read that far
    assert [d.window_start for d in monitor.due(now, stalled={"quiet"})] == []
    assert monitor.to_state()["versions"][1][2]["pending"] == []  # forgotten: nothing to judge
    monitor.reported("m", ["converted"])
    monitor.advance_clock({"m": 5 * W})
    assert [d.window_start // W for d in monitor.due(now)] == [0, 1, 2]


def test_names_are_capped_per_model() -> None:
    monitor = OutcomeMonitor(OutcomeConfig(), RulesConfig.default())
    monitor.reported("m", [f"o{i:03d}" for i in range(MAX_NAMES + 10)])
    monitor.reported("m", ["o000"])
    assert len(monitor.names["m"]) == MAX_NAMES
