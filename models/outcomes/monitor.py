"""Judge each prediction window's business outcomes once they have had time to arrive.

Outcomes (``converted``, ``revenue``, ...) come minutes to months after their prediction,
so a window is judged once, when it is *due*: the model's event time, and its labels
topic's (outcomes travel with the labels), have passed the window's end by
``judge_after_ms``, as :class:`~driftline.models.quality.monitor.PerformanceMonitor` does
for labels. Then every version that served in the window is judged on each outcome the
model has reported, per prediction (a prediction without a report counts as 0: a
conversion never reported did not happen):

* against its own baseline, its first ``baseline_windows`` judged windows with
  ``min_count`` predictions: ``outcome_change``, a two-sided z-test, bad when significant
  after Benjamini-Hochberg and the fall (``outcome_drop``, relative) reaches its floor;
* a challenger against the champion (the model's declared champion, else the version
  that served first) on the windows both served: ``challenger_test``, an always-valid
  mixture SPRT over the running sums (:class:`~driftline.models.outcomes.compare.ChallengerTest`),
  so looking after every window does not inflate false alarms; bad when significant and
  the challenger's shortfall (``challenger_drop``) reaches its floor.

For an outcome where higher is worse (a chargeback), the rules take ``outcome_rise`` and
``challenger_rise`` as the effect metrics instead. One incident per version, outcome and
comparison (``outcome:<model>:<version>:outcome.<name>:<metric>``), with the lifecycle of
every other incident. State is bounded by versions × outcomes (100 names at most per
model) and checkpoints with the partition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import Finding, Score, Verdict, evaluate_window, verdict
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import OUTCOME
from driftline.models.outcomes.compare import ChallengerTest, Summary, baseline_test
from driftline.models.quality.monitor import DueWindow, due_windows
from driftline.models.windows.feature_windows import FeatureWindowRow

__all__ = ["MAX_NAMES", "OutcomeComparisonRow", "OutcomeConfig", "OutcomeMonitor"]

CATEGORY = "outcome"
#: Outcome names tracked per model (rows for windows without a report, judging); reports of
#: more names are still stored and summed per window.
MAX_NAMES = 100
_NONE = Summary(0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class OutcomeConfig:
    window_ms: int = 60_000
    #: The version's first N judged windows with min_count predictions are its baseline.
    baseline_windows: int = 5
    judge_after_ms: Callable[[str], int] = lambda model: 3_600_000
    #: Coverage of the champion/challenger intervals over all looks at once.
    confidence: float = 0.95
    #: The model's declared champion version; None: the version that served first.
    champion: Callable[[str], str | None] = lambda model: None


@dataclasses.dataclass(frozen=True)
class OutcomeComparisonRow:
    """One version's outcome judged in one window: a row of ``outcome_comparisons``."""

    model: str
    version: str
    against: Literal["baseline", "champion"]
    against_version: str
    outcome: str
    window_start: int
    window_end: int
    span_start: int
    windows: int
    n: int
    mean: float
    against_n: int
    against_mean: float
    difference: float
    difference_low: float | None
    difference_high: float | None
    relative_change: float | None
    p_value: float
    verdict: Verdict


@dataclasses.dataclass
class _Version:
    #: Closed windows waiting to be judged: start -> predictions.
    pending: dict[int, int] = dataclasses.field(default_factory=dict)
    first_window: int = -1
    last_judged: int = -1
    judged: int = 0


@dataclasses.dataclass
class _Baseline:
    windows: int = 0
    summary: Summary = _NONE


@dataclasses.dataclass
class _Duel:
    """A challenger against the champion on one outcome, over the windows both served."""

    test: ChallengerTest
    span_start: int
    windows: int = 0
    champion: Summary = _NONE
    challenger: Summary = _NONE


class OutcomeMonitor:
    def __init__(self, config: OutcomeConfig, rules: RulesConfig) -> None:
        self.config = config
        self.rules = rules
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        #: Outcome names reported per model, in the order first seen.
        self.names: dict[str, list[str]] = {}
        #: Per model, the largest event time read from the labels topic.
        self.clock: dict[str, int] = {}
        self._versions: dict[tuple[str, str], _Version] = {}
        self._baselines: dict[tuple[str, str, str], _Baseline] = {}
        #: (model, challenger, champion, outcome) -> the running comparison.
        self._duels: dict[tuple[str, str, str, str], _Duel] = {}

    # -- what arrives -------------------------------------------------------------
    def reported(self, model: str, names: Collection[str]) -> None:
        """Outcome names a model reported; the first :data:`MAX_NAMES` are tracked."""
        known = self.names.setdefault(model, [])
        for name in sorted(set(names) - set(known)):
            if len(known) < MAX_NAMES:
                known.append(name)

    def observe_closed(self, rows: Sequence[FeatureWindowRow]) -> None:
        """Remember closed windows (and their predictions) until they are due."""
        for row in rows:
            state = self._versions.setdefault((row.model, row.version), _Version())
            if state.first_window < 0:
                state.first_window = row.window_start
            if row.window_start > state.last_judged:
                state.pending[row.window_start] = max(state.pending.get(row.window_start, 0),
                                                      row.count)

    def advance_clock(self, clock: Mapping[str, int]) -> None:
        for model, event_time in clock.items():
            self.clock[model] = max(self.clock.get(model, event_time), event_time)

    def due(self, event_times: Mapping[str, int],
            stalled: Collection[str] = ()) -> list[DueWindow]:
        """Windows whose end is ``judge_after_ms`` behind both the predictions' and the
        labels topic's event time (the predictions' alone if stalled). Due windows of a
        model that has reported no outcome are forgotten here: there is nothing to judge."""
        due = due_windows({key: state.pending for key, state in self._versions.items()},
                          event_times, self.clock, stalled, self.config.judge_after_ms,
                          self.config.window_ms)
        for window in due:
            if not self.names.get(window.model):
                del self._versions[(window.model, window.version)].pending[window.window_start]
        return [window for window in due if self.names.get(window.model)]

    # -- judging ------------------------------------------------------------------
    def judge(self, model: str, window_start: int,
              outcomes: Mapping[str, Mapping[str, Summary]]
              ) -> tuple[list[OutcomeComparisonRow], list[Alert]]:
        """Judge one due window of ``model``: per version, a :class:`Summary` per outcome
        (n = the window's predictions, unreported as 0). Versions of one window together,
        windows in order."""
        fresh = {}
        for version, summaries in sorted(outcomes.items()):
            state = self._versions.setdefault((model, version), _Version())
            if window_start <= state.last_judged:
                continue  # a replay
            state.pending.pop(window_start, None)
            state.last_judged = window_start
            state.judged += 1
            fresh[version] = summaries
        champion = self._champion(model, outcomes)
        rows: list[OutcomeComparisonRow] = []
        alerts: list[Alert] = []
        end = window_start + self.config.window_ms
        for version, summaries in fresh.items():
            scores: list[Score] = []
            found: list[OutcomeComparisonRow] = []
            for name, summary in sorted(summaries.items()):
                self._against_baseline(model, version, name, summary, window_start, scores,
                                       found)
                if champion is not None and version != champion and name in outcomes[champion]:
                    self._against_champion(model, version, champion, name, summary,
                                           outcomes[champion][name], window_start, scores,
                                           found)
            judged = self._versions[(model, version)].judged
            evaluation = evaluate_window(self.rules, model, version, window_start, end, scores,
                                         judged)
            findings = {(f.feature, f.metric): f for f in evaluation.findings}
            described = {key: _described(finding, row, self.config.confidence) for row in found
                         if (finding := findings.get(key := _key(row))) is not None}
            evaluation = dataclasses.replace(evaluation, findings=tuple(
                described.get((f.feature, f.metric), f) for f in evaluation.findings))
            alerts += self.incidents.update(evaluation)
            rows += [dataclasses.replace(row, verdict=verdict(findings.get(_key(row))))
                     for row in found]
        return rows, alerts

    def _champion(self, model: str, outcomes: Mapping[str, Mapping[str, Summary]]) -> str | None:
        serving = [v for v, summaries in outcomes.items()
                   if any(s.n for s in summaries.values())]
        declared = self.config.champion(model)
        if declared is not None:
            return declared if declared in serving else None
        if len(serving) < 2:
            return None
        return min(serving, key=lambda v: (self._versions[(model, v)].first_window, v))

    def _against_baseline(self, model: str, version: str, name: str, summary: Summary,
                          start: int, scores: list[Score],
                          rows: list[OutcomeComparisonRow]) -> None:
        baseline = self._baselines.setdefault((model, version, name), _Baseline())
        if baseline.windows < self.config.baseline_windows:
            rule = self.rules.rule(model, OUTCOME + name, "outcome_change")
            if summary.n >= (rule.min_count if rule is not None else 0):
                baseline.windows += 1
                baseline.summary = baseline.summary + summary
            return  # a baseline window is not judged against itself
        change = baseline_test(summary, baseline.summary)
        rel = change.relative_change
        scores += _scores(model, version, name, "outcome", change.p_value,
                          change.difference if rel is None else rel, rel, summary.n)
        rows.append(OutcomeComparisonRow(
            model, version, "baseline", version, name, start, start + self.config.window_ms,
            start, 1, summary.n, summary.mean, baseline.summary.n, baseline.summary.mean,
            change.difference, None, None, rel, change.p_value, "not_evaluated"))

    def _against_champion(self, model: str, version: str, champion: str, name: str,
                          summary: Summary, champion_summary: Summary, start: int,
                          scores: list[Score], rows: list[OutcomeComparisonRow]) -> None:
        if not summary.n or not champion_summary.n:
            return
        key = (model, version, champion, name)
        duel = self._duels.get(key)
        if duel is None:
            duel = self._duels[key] = _Duel(ChallengerTest(alpha=1 - self.config.confidence),
                                            start)
        duel.windows += 1
        duel.champion = duel.champion + champion_summary
        duel.challenger = duel.challenger + summary
        look = duel.test.update(duel.champion, duel.challenger)
        rel = look.relative_difference
        # This look's interval, valid on its own at every look: the running intersection
        # assumes the difference never moved, and a challenger going bad is exactly that.
        bounds = [b if math.isfinite(b) else None for b in look.interval]
        if look.ready:
            scores += _scores(model, version, name, "challenger", look.p_value,
                              look.difference if rel is None else rel, rel,
                              min(duel.champion.n, duel.challenger.n))
        rows.append(OutcomeComparisonRow(
            model, version, "champion", champion, name, start, start + self.config.window_ms,
            duel.span_start, duel.windows, duel.challenger.n, duel.challenger.mean,
            duel.champion.n, duel.champion.mean, look.difference, bounds[0], bounds[1],
            rel, look.p_value, "not_evaluated"))

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents.to_dict(),
            "names": sorted(self.names.items()),
            "clock": sorted(self.clock.items()),
            "versions": [[m, v, {**dataclasses.asdict(s), "pending": sorted(s.pending.items())}]
                         for (m, v), s in sorted(self._versions.items())],
            "baselines": [[m, v, o, b.windows, *_summary(b.summary)]
                          for (m, v, o), b in sorted(self._baselines.items())],
            "duels": [[*key, d.test.to_dict(), d.span_start, d.windows, *_summary(d.champion),
                       *_summary(d.challenger)] for key, d in sorted(self._duels.items())],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self.names = {str(m): list(names) for m, names in state["names"]}
        self.clock = {str(m): int(t) for m, t in state["clock"]}
        for model, version, fields in state["versions"]:
            fields = {**fields, "pending": {int(s): int(n) for s, n in fields["pending"]}}
            self._versions[(model, version)] = _Version(**fields)
        for m, v, o, windows, n, total, squares in state["baselines"]:
            self._baselines[(m, v, o)] = _Baseline(windows, Summary(n, total, squares))
        for m, v, c, o, test, span, windows, *sums in state["duels"]:
            self._duels[(m, v, c, o)] = _Duel(ChallengerTest.from_dict(test), span, windows,
                                              Summary(*sums[:3]), Summary(*sums[3:]))


def _scores(model: str, version: str, name: str, what: str, p_value: float, value: float,
            relative: float | None, n: int) -> list[Score]:
    """The test (value: the relative change, else the difference) and its effect metrics,
    the fall and the rise as shares of what it is compared with."""
    feature = OUTCOME + name
    test = "outcome_change" if what == "outcome" else "challenger_test"
    scores = [Score(model, version, feature, test, value, p_value, 0, n)]
    if relative is not None:
        scores += [Score(model, version, feature, f"{what}_drop", -relative, None, 0, n),
                   Score(model, version, feature, f"{what}_rise", relative, None, 0, n)]
    return scores


def _key(row: OutcomeComparisonRow) -> tuple[str, str]:
    return (OUTCOME + row.outcome,
            "outcome_change" if row.against == "baseline" else "challenger_test")


def _described(finding: Finding, row: OutcomeComparisonRow, confidence: float) -> Finding:
    """The finding with a reason a person reads: which outcome, against what, by how much,
    with what confidence."""
    change = "" if row.relative_change is None else f" ({row.relative_change:+.1%})"
    if row.against == "baseline":
        reason = (f"{row.outcome} per prediction {row.mean:.4g} vs baseline "
                  f"{row.against_mean:.4g}{change}, p {row.p_value:.2g}")
    else:
        low, high = row.difference_low, row.difference_high
        scale = abs(row.against_mean) or 1.0
        shown = ("" if low is None or high is None else
                 f", {confidence:.0%} interval {low / scale:+.1%} to {high / scale:+.1%}"
                 if row.against_mean else
                 f", {confidence:.0%} interval {low:+.4g} to {high:+.4g}")
        reason = (f"{row.outcome} per prediction {row.mean:.4g} vs champion "
                  f"{row.against_version} {row.against_mean:.4g}{change}{shown} over "
                  f"{row.windows} windows, always-valid p {row.p_value:.2g}")
    return dataclasses.replace(finding, reason=reason)


def _summary(s: Summary) -> list[Any]:
    return [s.n, s.total, s.sum_squares]
