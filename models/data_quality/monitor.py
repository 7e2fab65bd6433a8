"""Data-quality rows and incidents for the model versions of one partition.

:class:`DataQualityMonitor` takes each closed window with the reference drift judged it
against, computes its checks (:mod:`driftline.models.data_quality.checks`), judges them with
the ``category = "data_quality"`` rules and tracks one incident per feature
(``data_quality:<model>:<version>:<feature>``), whichever of its checks is bad, with the
lifecycle of every other incident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import (
    Finding,
    Score,
    Verdict,
    evaluate_window,
    verdict,
    worst_per_feature,
)
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.data_quality.checks import (
    Check,
    declared_range_checks,
    duplicate_checks,
    registry_checks,
    timeliness_checks,
    volume_checks,
    window_checks,
)
from driftline.models.drift.reference import ReferenceProfile
from driftline.models.windows.feature_windows import FeatureWindowRow

__all__ = ["DataQualityMonitor", "DataQualityRow", "Registered"]

#: (model, version) -> registered, or None for a model that does not use the registry.
Registered = Callable[[str, str], bool | None]

@dataclasses.dataclass(frozen=True)
class DataQualityRow:
    """One check of one feature in one closed window: a row of ``data_quality``."""

    model: str
    version: str
    feature: str
    window_start: int
    window_end: int
    check: str
    value: float
    observed: float
    expected: float | None
    events: int
    affected: int
    threshold: float | None
    verdict: Verdict
    reference_source: str
    reference_id: str


class DataQualityMonitor:
    """Checks, judges and tracks data-quality incidents per model version."""

    def __init__(self, rules: RulesConfig, volume_windows: int = 5,
                 registered: Registered | None = None) -> None:
        self.rules = rules
        self.volume_windows = volume_windows
        #: Whether a version is registered (None: its model does not use the registry).
        self.registered = registered
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        self._windows_seen: dict[tuple[str, str], int] = {}
        #: Events of each version's latest windows, oldest first (the volume baseline).
        self._volumes: dict[tuple[str, str], list[int]] = {}

    def observe(self, window: Sequence[FeatureWindowRow],
                reference: ReferenceProfile | None) -> tuple[list[DataQualityRow], list[Alert]]:
        """Rows and alerts of one closed window (every row of one version and start)."""
        if not window:
            return [], []
        first = window[0]
        model, version, start, end = first.model, first.version, first.window_start, \
            first.window_end
        seen = self._windows_seen[(model, version)] = self._windows_seen.get(
            (model, version), 0) + 1
        incidents = self.incidents.incident_metrics(model, version)
        events = max(row.window_events or row.count for row in window)
        volumes = self._volumes.setdefault((model, version), [])
        checks = [*window_checks(window, reference, incidents), *timeliness_checks(window),
                  *volume_checks(events, volumes),
                  *duplicate_checks(events, first.distinct_requests),
                  *registry_checks(None if self.registered is None
                                   else self.registered(model, version), events),
                  *declared_range_checks(
                      window, lambda feature: self.rules.declared_range(model, feature)
                      is not None)]
        volumes.append(events)
        del volumes[:-self.volume_windows]
        evaluation = evaluate_window(
            self.rules, model, version, start, end,
            [Score(model, version, c.feature, c.check, c.value, None,
                   reference.features[c.feature].count
                   if reference is not None and c.feature in reference.features else 0, c.n)
             for c in checks], seen)
        findings = {(f.feature, f.metric): f for f in evaluation.findings}
        alerts = self.incidents.update(worst_per_feature(evaluation, incidents))
        source, profile_id = ((reference.source, reference.profile_id) if reference is not None
                              else ("", ""))
        rows = [_row(model, version, start, end, c, findings.get((c.feature, c.check)),
                     source, profile_id) for c in checks]
        return rows, alerts

    def to_state(self) -> dict[str, Any]:
        return {"incidents": self.incidents.to_dict(),
                "windows_seen": [[m, v, n] for (m, v), n in sorted(self._windows_seen.items())],
                "volumes": [[m, v, n] for (m, v), n in sorted(self._volumes.items())]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self._windows_seen = {(m, v): n for m, v, n in state["windows_seen"]}
        self._volumes = {(m, v): list(n) for m, v, n in state.get("volumes", [])}


def _row(model: str, version: str, start: int, end: int, check: Check, finding: Finding | None,
         source: str, profile_id: str) -> DataQualityRow:
    return DataQualityRow(model, version, check.feature, start, end, check.check, check.value,
                          check.observed, check.expected, check.events, check.affected,
                          None if finding is None else finding.threshold, verdict(finding),
                          source, profile_id)
