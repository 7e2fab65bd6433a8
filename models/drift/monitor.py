"""Model health per partition: closed windows -> drift scores -> rules -> incidents -> alerts.

:class:`Monitor` is pure and checkpointable like the window state it sits beside. For
each closed window of a model version it picks the reference (the live training profile,
else the version's production baseline), scores every feature the window shares with it
(:mod:`driftline.models.drift.scores`), judges the scores
(:func:`driftline.models.alerting.evaluation.evaluate_window`) and feeds the verdicts to the
version's incident tracker, which turns runs of bad windows into one ``open`` alert and runs of good
ones into one ``resolved``.

river detectors (:mod:`driftline.models.drift.detector_watch`) watch the version's score stream and
its features' window means; a detector firing in a window is a bad score of that feature like any
other, except that it may open the feature's incident at once: detectors reset after a hit, so they
rarely fire in two windows running.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from driftline.models import state_codec
from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import (
    Evaluation,
    Finding,
    Score,
    Verdict,
    evaluate_window,
    verdict,
    worst_per_feature,
)
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.data_quality.monitor import DataQualityRow
from driftline.models.drift.baseline import baseline_profile
from driftline.models.drift.detector_watch import DetectorWatch
from driftline.models.drift.reference import (
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
)
from driftline.models.drift.scores import (
    DriftScore,
    NumericWindow,
    categorical_scores,
    numeric_scores_many,
)
from driftline.models.drift.spans import Spans, span_note
from driftline.models.events.wire import SERVICE, EventBlock
from driftline.models.telemetry.service_monitor import ServiceWindowRow
from driftline.models.windows.feature_windows import FeatureWindowRow

DETECTOR_METRICS = frozenset({"adwin", "kswin", "page_hinkley", "ddm", "eddm", "hddm_a"})
ReferenceLookup = Callable[[str, str], ReferenceProfile | None]


@dataclasses.dataclass(frozen=True)
class DriftScoreRow:
    """One metric of one feature of one closed window: a row of ``drift_scores``."""

    model: str
    version: str
    feature: str
    window_start: int
    window_end: int
    metric: str
    value: float
    p_value: float | None
    error_bound: float | None
    n_reference: int
    n_window: int
    threshold: float | None
    verdict: Verdict
    reference_source: str
    reference_id: str
    #: Start of the first window the score rests on: ``window_start``, or earlier when a
    #: quiet feature's windows were merged to reach ``min_count`` (models/drift/spans.py).
    span_start: int = -1

    def __post_init__(self) -> None:
        if self.span_start < 0:
            object.__setattr__(self, "span_start", self.window_start)

    @property
    def model_version(self) -> str:
        return self.version


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    window_ms: int = 60_000
    baseline_windows: int = 5
    baseline_mode: Literal["fixed", "rolling"] = "fixed"
    top_k_categories: int = 20
    psi_smoothing: float = 1e-4
    chi_smoothing: float = 0.5
    detectors: tuple[str, ...] = ("adwin", "page_hinkley")
    detector_streams: tuple[str, ...] = ("score", "feature_means")


@dataclasses.dataclass
class MonitorResult:
    scores: list[DriftScoreRow] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)
    #: Baselines that became live in this call (fixed mode: once per version).
    baselines: list[ReferenceProfile] = dataclasses.field(default_factory=list)
    #: Service rows of the closed windows (see driftline.models.telemetry.service_monitor).
    service: list[ServiceWindowRow] = dataclasses.field(default_factory=list)
    #: Data-quality checks of the closed windows (see driftline.models.data_quality).
    data_quality: list[DataQualityRow] = dataclasses.field(default_factory=list)

    def extend(self, other: MonitorResult) -> None:
        self.scores += other.scores
        self.alerts += other.alerts
        self.baselines += other.baselines
        self.service += other.service
        self.data_quality += other.data_quality


class _Version:
    """What the monitor remembers about one model version."""

    def __init__(self, keep: int) -> None:
        self.windows_seen = 0
        self.baseline: ReferenceProfile | None = None
        #: The reference the latest window was judged against (detectors standardise by it).
        self.current: ReferenceProfile | None = None
        self.recent: deque[list[FeatureWindowRow]] = deque(maxlen=keep)
        self.spans = Spans()


class Monitor:
    """Scores, judges and tracks incidents for the model versions on one partition."""

    def __init__(self, config: MonitorConfig, rules: RulesConfig,
                 references: ReferenceLookup | None = None) -> None:
        self.config = config
        self.rules = rules
        self.references: ReferenceLookup = references or (lambda model, version: None)
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        self.detectors = DetectorWatch(config.window_ms, config.detectors,
                                       config.detector_streams)
        self._versions: dict[tuple[str, str], _Version] = {}

    def observe_block(self, block: EventBlock) -> None:
        """Feed one prediction message to the detectors (call in message order)."""
        state = self._versions.get((block.model, block.version))
        reference = self.references(block.model, block.version) or (
            state.current if state is not None else None)
        self.detectors.observe_block(block, reference)

    def observe(self, rows: Sequence[FeatureWindowRow]) -> MonitorResult:
        """Judge the closed windows in ``rows`` (in the order they closed)."""
        result = MonitorResult()
        windows: dict[tuple[str, str, int], list[FeatureWindowRow]] = {}
        for row in rows:
            windows.setdefault((row.model, row.version, row.window_start), []).append(row)
        for (model, version, _), window in windows.items():
            self._observe_window(model, version, window, result)
        return result

    def _observe_window(self, model: str, version: str, window: list[FeatureWindowRow],
                        result: MonitorResult) -> None:
        # The service's latency and status are judged as service health, not as drift.
        window = [row for row in window if not row.feature.startswith(SERVICE)]
        if not window:
            return
        state = self._versions.setdefault((model, version), _Version(self.config.baseline_windows))
        state.windows_seen += 1
        reference = self.references(model, version) or self._baseline(state)
        start, end = window[0].window_start, window[0].window_end
        scored: list[tuple[Score, DriftScore]] = []
        spans: dict[str, tuple[int, int]] = {}  # merged feature -> (windows, first start)
        if reference is not None:
            state.current = reference
            judged, merged = state.spans.judged_rows(
                window, lambda feature: self._min_count(model, feature, reference))
            spans = {row.feature: (merged[row.feature], row.window_start) for row in judged
                     if row.feature in merged}
            scored = self._score(judged, reference) + [
                (s, DriftScore(s.metric, s.value, None, None, s.n_reference, s.n_window))
                for s in self.detectors.close_window(window, reference)]
        evaluation = _on_spans(evaluate_window(self.rules, model, version, start, end,
                                               [score for score, _ in scored],
                                               state.windows_seen), spans)
        # One incident per feature: a shift makes several of its metrics bad at once.
        result.alerts += self.incidents.update(worst_per_feature(_detectors_open_at_once(
            evaluation)))
        if reference is not None:
            findings = _findings(evaluation)
            result.scores += [_row(score, drift, findings.get((score.feature, score.metric)),
                                   start, end, reference,
                                   spans.get(score.feature, (1, start))[1])
                              for score, drift in scored]
        self._remember(model, version, state, window, result)

    def judged_against(self, model: str, version: str) -> ReferenceProfile | None:
        """The reference the version's latest window was judged against, if any."""
        state = self._versions.get((model, version))
        return None if state is None else state.current

    def _min_count(self, model: str, feature: str, reference: ReferenceProfile) -> int:
        """Values a window of the feature needs to be judged alone (its PSI rule's: PSI is
        every feature's effect measure); 0 for what is not scored."""
        if feature not in reference.features:
            return 0
        rule = self.rules.rule(model, feature, "psi")
        return rule.min_count if rule is not None and rule.enabled else 0

    def _baseline(self, state: _Version) -> ReferenceProfile | None:
        if self.config.baseline_mode == "fixed":
            return state.baseline
        if len(state.recent) < self.config.baseline_windows:
            return None
        first = state.recent[0][0]
        return baseline_profile(first.model, first.version, state.recent,
                                self.config.top_k_categories)

    def _remember(self, model: str, version: str, state: _Version,
                  window: list[FeatureWindowRow], result: MonitorResult) -> None:
        if self.config.baseline_mode == "fixed" and state.baseline is not None:
            return
        state.recent.append(window)
        if (self.config.baseline_mode == "fixed"
                and len(state.recent) == self.config.baseline_windows):
            state.baseline = baseline_profile(model, version, state.recent,
                                              self.config.top_k_categories)
            state.recent.clear()
            result.baselines.append(state.baseline)

    def _score(self, window: list[FeatureWindowRow],
               reference: ReferenceProfile) -> list[tuple[Score, DriftScore]]:
        # A window's numeric features are scored together (numeric_scores_many), in row order.
        numeric: list[tuple[int, FeatureWindowRow, NumericReference]] = []
        per_row: list[list[DriftScore]] = []
        for i, row in enumerate(window):
            feature = reference.features.get(row.feature)
            if isinstance(feature, NumericReference) and row.kind == "numeric":
                # Comparable only when binned alike (windows opened before a reference was
                # published keep the edges they had).
                if row.bin_edges == feature.edges and row.fine_bin_edges == feature.fine_edges:
                    numeric.append((i, row, feature))
                per_row.append([])
            else:
                per_row.append(self._categorical(row, feature))
        scored = numeric_scores_many(
            [feature for _, _, feature in numeric],
            [NumericWindow(row.bin_counts, row.fine_bin_counts, row.min, row.max)
             for _, row, _ in numeric], psi_smoothing=self.config.psi_smoothing)
        for (i, _, _), drifts in zip(numeric, scored, strict=True):
            per_row[i] = drifts
        return [(Score(row.model, row.version, row.feature, drift.metric, drift.value,
                       drift.p_value, drift.n_reference, drift.n_window), drift)
                for row, drifts in zip(window, per_row, strict=True) for drift in drifts]

    def _categorical(self, row: FeatureWindowRow,
                     feature: NumericReference | CategoricalReference | None) -> list[DriftScore]:
        if isinstance(feature, CategoricalReference) and row.kind == "categorical":
            counts = row.tracked_counts or dict(zip(row.categories, row.category_counts,
                                                    strict=True))
            named = sum(counts.values())
            untracked = row.count - row.missing_count - named
            return categorical_scores(feature, {c: n for c, n in counts.items() if n},
                                      untracked=max(untracked, 0),
                                      psi_smoothing=self.config.psi_smoothing,
                                      chi_smoothing=self.config.chi_smoothing)
        return []

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents.to_dict(),
            "detectors": self.detectors.to_state(),
            "versions": [[model, version, state.windows_seen,
                          None if state.baseline is None else state.baseline.to_state(),
                          self._current_state(model, version, state),
                          [[_row_state(row) for row in w] for w in state.recent],
                          state.spans.to_state(_row_state)]
                         for (model, version), state in self._versions.items()],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self.detectors.load_state(state["detectors"])
        for model, version, seen, baseline, current, recent, *spans in state["versions"]:
            version_state = _Version(self.config.baseline_windows)
            if spans:  # records written before quiet features were merged have none
                version_state.spans = Spans.from_state(spans[0], _window_row)
            version_state.windows_seen = seen
            if baseline is not None:
                version_state.baseline = _profile(baseline)
            if current == _SAME_AS_BASELINE:
                version_state.current = version_state.baseline
            elif isinstance(current, dict) and _LIVE_REFERENCE in current:
                # Read again from the references topic; gone if it changed meanwhile.
                live = self.references(model, version)
                if live is not None and live.profile_id == current[_LIVE_REFERENCE]:
                    version_state.current = live
            elif current is not None:
                version_state.current = _profile(current)
            version_state.recent.extend([_window_row(r) for r in w] for w in recent)
            self._versions[(model, version)] = version_state

    def to_bytes(self) -> bytes:
        return state_codec.encode(self.to_state())

    def _current_state(self, model: str, version: str,
                       state: _Version) -> str | dict[str, Any] | None:
        if state.current is None:
            return None
        if state.current is state.baseline:
            return _SAME_AS_BASELINE
        if state.current is self.references(model, version):
            # The live training reference: its topic keeps it, the record names it.
            return {_LIVE_REFERENCE: state.current.profile_id}
        return state.current.to_state()

    @classmethod
    def from_bytes(cls, data: bytes, config: MonitorConfig, rules: RulesConfig,
                   references: ReferenceLookup | None = None) -> Monitor:
        monitor = cls(config, rules, references)
        monitor.load_state(state_codec.decode(data))
        return monitor


#: In a checkpoint, for a version judged against its own baseline (half the record of a
#: model with hundreds of features, written twice otherwise).
_SAME_AS_BASELINE = "baseline"
_LIVE_REFERENCE = "live_reference"
#: Columns of a window row stored as arrays in a record (the edges once per record).
_ROW_ARRAYS = {"quantiles": np.float64, "bin_edges": np.float64, "bin_counts": np.int64,
               "fine_bin_edges": np.float64, "fine_bin_counts": np.int64,
               "category_counts": np.int64}


def _profile(state: str | dict[str, Any]) -> ReferenceProfile:
    # Records written before profiles were stored as arrays hold their JSON.
    if isinstance(state, str):
        return ReferenceProfile.from_json(state)
    return ReferenceProfile.from_state(state)


def _on_spans(evaluation: Evaluation, spans: dict[str, tuple[int, int]]) -> Evaluation:
    """Findings of merged features say which span they judged."""
    if not spans:
        return evaluation
    findings = tuple(dataclasses.replace(f, reason=f"{f.reason}, {span_note(*spans[f.feature])}")
                     if f.feature in spans else f for f in evaluation.findings)
    return dataclasses.replace(evaluation, findings=findings)


def _row(score: Score, drift: DriftScore, finding: Finding | None, start: int, end: int,
         reference: ReferenceProfile, span_start: int) -> DriftScoreRow:
    return DriftScoreRow(
        score.model, score.version, score.feature, start, end, score.metric, drift.value,
        drift.p_value, drift.error_bound, drift.n_reference, drift.n_window,
        None if finding is None else finding.threshold, verdict(finding), reference.source,
        reference.profile_id, span_start)


def _detectors_open_at_once(evaluation: Evaluation) -> Evaluation:
    findings = tuple(dataclasses.replace(f, opens_at_once=True) if f.metric in DETECTOR_METRICS
                     else f for f in evaluation.findings)
    return dataclasses.replace(evaluation, findings=findings)


def _findings(evaluation: Evaluation) -> dict[tuple[str, str], Finding]:
    """The first finding of each feature × metric (a window has one per score)."""
    index: dict[tuple[str, str], Finding] = {}
    for finding in evaluation.findings:
        index.setdefault((finding.feature, finding.metric), finding)
    return index


def _row_state(row: FeatureWindowRow) -> dict[str, Any]:
    doc = dict(vars(row))
    for name, dtype in _ROW_ARRAYS.items():
        doc[name] = np.asarray(doc[name], dtype=dtype)
    return doc


def _window_row(doc: dict[str, Any]) -> FeatureWindowRow:
    # JSON has no NaN: orjson wrote "no value" as null; it comes back as NaN.
    def value(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return tuple(v.tolist())
        if isinstance(v, list):
            return tuple(math.nan if x is None else x for x in v)
        return v

    fields: dict[str, Any] = {k: value(v) for k, v in doc.items()}
    for name in ("mean", "variance", "min", "max"):
        fields[name] = math.nan if fields[name] is None else fields[name]
    return FeatureWindowRow(**fields)
