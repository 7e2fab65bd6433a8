"""Judge each prediction window's quality once its labels have had time to arrive.

Labels trickle in for days, so a window's quality is judged once, when it is *due*: the
model's event time has passed the window's end by ``judge_after_ms`` (per model), and so
has its labels' event time (the labels topic is read on its own, and may lag the
predictions by minutes of wall time, or much more while a backlog is read: a window
judged before its labels were read would look unlabelled). A model whose labels have
*stalled* (the caller decides: no label read for a while of wall time, or none ever) is
judged on its predictions' time alone, with what it has, so a coverage rule can say the
labels stopped. Then,
in window order per model version, :class:`PerformanceMonitor`:

1. feeds the window's errors (1 = wrong) to DDM, EDDM and HDDM_A and its per-row loss to
   ADWIN, in prediction-time order (so the outcome does not depend on when labels came);
2. turns the window's metrics into scores, judged by the ``category = "performance"``
   rules of the alerting config (:func:`driftline.models.alerting.evaluation.evaluate_window`):
   ``accuracy_drop`` / ``mae_ratio`` against the version's first judged windows, absolute
   levels (accuracy below X, coverage below Y, label delay above Z) where set, and the
   detectors (a hit opens an incident at once);
3. feeds the verdicts to its own incident tracker: one incident for the model's quality
   (``performance:model:version:quality``) and one for its labels
   (``...:labels``: coverage and delay), with the same lifecycle as drift incidents.

Rows of the ``performance`` table are written whenever labels change a window; judging
adds only alerts. State (windows waiting to be judged, baselines, detectors, incidents)
is bounded by versions × ``judge_after_ms / window_ms`` and checkpoints with the
partition.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import Score, evaluate_window, worst_per_feature
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.detectors import DetectorBank, DetectorSpec
from driftline.models.quality.performance import coverage
from driftline.models.quality.performance_window import WindowPerformance
from driftline.models.windows.feature_windows import FeatureWindowRow

__all__ = ["DueWindow", "PerformanceConfig", "PerformanceMonitor", "due_windows"]

QUALITY = "quality"
LABELS = "labels"
#: Error-rate detectors (1 = wrong) and the loss detector. EDDM with river's defaults
#: raised 17.6 false alarms per 10,000 values on a stationary 10 % error rate; with these
#: 1.3 (and 0.55 at 2 %): see DetectorSpec below.
ERROR_DETECTORS = (DetectorSpec("ddm"),
                   DetectorSpec.of("eddm", warm_start=100, alpha=0.9, beta=0.85),
                   DetectorSpec("hddm_a"))
LOSS_DETECTORS = (DetectorSpec("adwin"),)
LOSS_METRIC = "adwin_loss"
#: At most this many labelled predictions per window reach the detectors (evenly spaced,
#: deterministic), bounding their cost at ~1 µs a value.
MAX_DETECTOR_VALUES = 5_000


@dataclasses.dataclass(frozen=True)
class PerformanceConfig:
    #: Off when predictions are not joined with labels: nothing is remembered or judged.
    enabled: bool = True
    window_ms: int = 60_000
    #: The version's first N judged windows with enough labels are its quality baseline.
    baseline_windows: int = 5
    judge_after_ms: Callable[[str], int] = lambda model: 3_600_000


@dataclasses.dataclass(frozen=True)
class DueWindow:
    model: str
    version: str
    window_start: int
    window_end: int
    n_predicted: int


@dataclasses.dataclass
class _Version:
    #: Closed windows waiting to be judged: start -> events predicted.
    pending: dict[int, int] = dataclasses.field(default_factory=dict)
    judged: int = 0
    last_judged: int = -1
    #: Baseline: windows used, and (right or abs-error sum, labelled count) over them.
    baseline_windows: int = 0
    baseline_sum: float = 0.0
    baseline_count: int = 0


class PerformanceMonitor:
    def __init__(self, config: PerformanceConfig, rules: RulesConfig) -> None:
        self.config = config
        self.rules = rules
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        self._versions: dict[tuple[str, str], _Version] = {}
        #: Per model, the largest label event time read so far.
        self.label_clock: dict[str, int] = {}
        self._errors: dict[tuple[str, str], DetectorBank] = {}
        self._losses: dict[tuple[str, str], DetectorBank] = {}

    def observe_closed(self, rows: Sequence[FeatureWindowRow]) -> None:
        """Remember closed windows (and how many predictions each had) until they are due."""
        if not self.config.enabled:
            return
        for row in rows:
            state = self._versions.setdefault((row.model, row.version), _Version())
            if row.window_start > state.last_judged:
                state.pending[row.window_start] = max(state.pending.get(row.window_start, 0),
                                                      row.count)

    def advance_label_clock(self, clock: Mapping[str, int]) -> None:
        """Record how far (event time) each model's labels have been read."""
        if not self.config.enabled:
            return
        for model, event_time in clock.items():
            self.label_clock[model] = max(self.label_clock.get(model, event_time), event_time)

    def due(self, event_times: Mapping[str, int],
            stalled: Collection[str] = ()) -> list[DueWindow]:
        """Windows whose predictions' and labels' event times passed their end by
        ``judge_after_ms``; for ``stalled`` models, the predictions' alone."""
        return due_windows({key: state.pending for key, state in self._versions.items()},
                           event_times, self.label_clock, stalled, self.config.judge_after_ms,
                           self.config.window_ms)

    def judge(self, window: DueWindow, perf: WindowPerformance) -> list[Alert]:
        """Judge one due window (in window order per version); the alerts it causes."""
        key = (window.model, window.version)
        state = self._versions.setdefault(key, _Version())
        if window.window_start <= state.last_judged:
            return []  # a replay
        state.pending.pop(window.window_start, None)
        state.last_judged = window.window_start
        state.judged += 1
        scores = self._scores(window, perf, state) + self._detector_scores(key, window, perf)
        evaluation = evaluate_window(self.rules, window.model, window.version,
                                     window.window_start, window.window_end, scores,
                                     state.judged)
        # Detectors do not open an incident on their own here: HDDM_A fires about once per
        # million stationary labels, and the accuracy drop it reacts to shows in the next
        # window's accuracy_drop too.
        findings = tuple(dataclasses.replace(f, category="performance")
                         for f in evaluation.findings)
        return self.incidents.update(worst_per_feature(
            dataclasses.replace(evaluation, findings=findings)))

    def _scores(self, window: DueWindow, perf: WindowPerformance,
                state: _Version) -> list[Score]:
        n = perf.n_labeled
        values: dict[tuple[str, str], float | None] = {
            (LABELS, "coverage"): coverage(n, window.n_predicted),
            **{(LABELS, name): v for name, v in perf.delay_quantiles().items()},
        }
        for name in ("accuracy", "f1_macro", "roc_auc", "log_loss", "ece", "mae", "rmse",
                     "mape"):
            values[(QUALITY, name)] = perf.metrics.get(name)
        current = _baseline_value(perf)
        baseline = self._baseline(window.model, state, perf, current)
        if baseline is not None and current is not None:
            if perf.task == "classification":
                values[(QUALITY, "accuracy_drop")] = baseline - current
            elif baseline > 0:
                values[(QUALITY, "mae_ratio")] = current / baseline
        # Coverage and delay are judged on the predictions, quality on the labels.
        return [Score(window.model, window.version, feature, metric, float(value), None, 0,
                      window.n_predicted if feature == LABELS else n)
                for (feature, metric), value in sorted(values.items())
                if value is not None and math.isfinite(value)]

    def _baseline(self, model: str, state: _Version, perf: WindowPerformance,
                  current: float | None) -> float | None:
        """The version's quality over its first judged windows with enough labels."""
        wanted = self.config.baseline_windows
        metric = "accuracy_drop" if perf.task == "classification" else "mae_ratio"
        rule = self.rules.rule(model, QUALITY, metric)
        min_count = rule.min_count if rule is not None else 0
        if state.baseline_windows < wanted and current is not None and perf.n_labeled >= min_count:
            state.baseline_windows += 1
            state.baseline_sum += current * perf.n_labeled
            state.baseline_count += perf.n_labeled
            return None  # a baseline window is not judged against itself
        if state.baseline_windows < wanted or state.baseline_count == 0:
            return None
        return state.baseline_sum / state.baseline_count

    def _detector_scores(self, key: tuple[str, str], window: DueWindow,
                         perf: WindowPerformance) -> list[Score]:
        if perf.n_labeled == 0:
            return []
        errors = self._errors.get(key)
        if errors is None:
            errors = self._errors[key] = DetectorBank(ERROR_DETECTORS, MAX_DETECTOR_VALUES)
            self._losses[key] = DetectorBank(LOSS_DETECTORS, MAX_DETECTOR_VALUES)
        fired: set[str] = set()
        if perf.task == "classification":
            fired |= {hit.detector for hit in errors.update("error", perf.errors)}
        # ADWIN is two-sided: only a change for the worse (quality below the baseline's)
        # is a bad sign; an improvement only resets it.
        loss_hits = self._losses[key].update("loss", perf.losses)
        if loss_hits and self._worse_than_baseline(key, perf):
            fired.add(LOSS_METRIC)
        names = ([s.kind for s in ERROR_DETECTORS] if perf.task == "classification" else []) + [
            LOSS_METRIC]
        return [Score(window.model, window.version, QUALITY, name, float(name in fired), None,
                      0, perf.n_labeled) for name in names]

    def _worse_than_baseline(self, key: tuple[str, str], perf: WindowPerformance) -> bool:
        state = self._versions[key]
        current = _baseline_value(perf)
        if current is None or state.baseline_count == 0:
            return False
        baseline = state.baseline_sum / state.baseline_count
        return current < baseline if perf.task == "classification" else current > baseline

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "label_clock": sorted(self.label_clock.items()),
            "incidents": self.incidents.to_dict(),
            "versions": [[m, v, {**dataclasses.asdict(s),
                                 "pending": sorted(s.pending.items())}]
                         for (m, v), s in sorted(self._versions.items())],
            "detectors": [[m, v, _pickled(self._errors[m, v]), _pickled(self._losses[m, v])]
                          for (m, v) in sorted(self._errors)],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self.label_clock = {str(m): int(t) for m, t in state.get("label_clock", [])}
        for model, version, fields in state["versions"]:
            fields = {**fields, "pending": {int(s): int(n) for s, n in fields["pending"]}}
            self._versions[(model, version)] = _Version(**fields)
        for model, version, errors, losses in state["detectors"]:
            self._errors[(model, version)] = DetectorBank.from_bytes(base64.b64decode(errors))
            self._losses[(model, version)] = DetectorBank.from_bytes(base64.b64decode(losses))


_NEVER = -(2**62)


def due_windows(pending: Mapping[tuple[str, str], Mapping[int, int]],
                event_times: Mapping[str, int], clock: Mapping[str, int],
                stalled: Collection[str], judge_after_ms: Callable[[str], int],
                window_ms: int) -> list[DueWindow]:
    """Of each version's ``pending`` windows (start -> predictions), those whose end is
    ``judge_after_ms`` behind both the model's event time and its labels topic's
    ``clock`` (the event time alone for ``stalled`` models), in version and window order."""
    out = []
    for (model, version), starts in sorted(pending.items()):
        now = event_times.get(model)
        if now is None:
            continue
        if model not in stalled:
            now = min(now, clock.get(model, _NEVER))
        horizon = now - judge_after_ms(model) - window_ms
        out += [DueWindow(model, version, start, start + window_ms, n)
                for start, n in sorted(starts.items()) if start <= horizon]
    return out
_DETECTOR_METRICS = frozenset({*(s.kind for s in ERROR_DETECTORS), LOSS_METRIC})


def _baseline_value(perf: WindowPerformance) -> float | None:
    key = "accuracy" if perf.task == "classification" else "mae"
    value = perf.metrics.get(key)
    return None if value is None or not math.isfinite(value) else float(value)


def _pickled(bank: DetectorBank) -> str:
    return base64.b64encode(bank.to_bytes()).decode()

