"""One incident, one alert: hysteresis, escalation and cooldown per dedup key.

:class:`IncidentTracker` consumes the :class:`~driftline.models.alerting.evaluation.Evaluation` of
each closed window, per model version in window order, and follows each dedup key
(``category:model:version:feature:metric``) through these phases:

* **pending**: bad in the latest judged windows, not yet ``open_after`` in a row. A
  window in which the key is good ends the streak and the key is forgotten; one in which
  it is not judged (skipped, or absent: a quiet feature filling its next span) leaves the
  streak as it is.
* **open**: emitted ``open`` once, with the worst severity of the streak. A critical
  window while open at "warning" emits ``escalated`` (at most once: there is no way back
  down, and the incident keeps severity critical until it resolves). ``resolve_after``
  good windows with no bad window between them emit ``resolved``; windows in which the
  key is not judged count neither way, so missing data never resolves an incident.
* **cooling**: the ``cooldown_windows`` windows of the version after a resolve are
  ignored for that key; then it is forgotten, and a new incident needs a new streak.

Nothing else is kept, so the state is bounded by the keys that are pending, open or
cooling. A window at or before the latest one already applied for its model version is
ignored (a replay), and the alert id is a UUID5 of the dedup key and the first bad
window's start: a replay after a crash re-emits identical alerts.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import weakref
from typing import Any, Literal, Self

from driftline.models.alerting.alerts import Alert, State, alert_id
from driftline.models.alerting.evaluation import Evaluation, Finding
from driftline.models.alerting.rules import IncidentSettings, Severity

__all__ = ["IncidentTracker"]

Phase = Literal["pending", "open", "cooling"]


@dataclasses.dataclass
class _Incident:
    model: str
    version: str
    feature: str
    metric: str
    category: str
    phase: Phase
    severity: Severity
    first_seen: int
    last_seen: int
    bad_windows: int = 1
    good_streak: int = 0
    cooldown_left: int = 0

    def add_bad(self, finding: Finding) -> None:
        self.bad_windows += 1
        self.good_streak = 0
        self.last_seen = finding.window_end


@dataclasses.dataclass
class _Version:
    last_window_start: int
    incidents: dict[str, _Incident]


class IncidentTracker:
    """Turns per-window findings into ``open`` / ``escalated`` / ``resolved`` alerts.

    Parameters
    ----------
    open_after
        Consecutive bad windows that open an incident.
    resolve_after
        Good windows, with no bad one between, that resolve it.
    cooldown_windows
        Windows after a resolve during which the key cannot open a new incident.

    Examples
    --------
    >>> from driftline.models.alerting.evaluation import Score, evaluate_window
    >>> from driftline.models.alerting.rules import RulesConfig
    >>> rules, tracker = RulesConfig.default(), IncidentTracker(open_after=2, resolve_after=1)
    >>> t0 = 1764235740000
    >>> for i, psi in enumerate([0.3, 0.3, 0.02]):
    ...     start = t0 + i * 60_000
    ...     score = Score("fraud-detector", "2", "amount", "psi", psi, None, 10_000, 900)
    ...     window = evaluate_window(rules, "fraud-detector", "2", start, start + 60_000,
    ...                              [score], windows_seen=3 + i)
    ...     for alert in tracker.update(window):
    ...         print(alert.state, alert.severity, alert.summary)  # doctest: +NORMALIZE_WHITESPACE
    open critical fraud-detector v2: feature 'amount' drifted (psi 0.3 ≥ critical 0.25)
        for 2 windows since 2025-11-27 09:29 UTC
    resolved critical fraud-detector v2: feature 'amount' back to normal
        (psi 0.02 < warning 0.1) for 1 window; bad since 2025-11-27 09:29 UTC
    >>> tracker.phases
    {'drift:fraud-detector:2:amount:psi': 'cooling'}
    """

    def __init__(self, open_after: int = 2, resolve_after: int = 3,
                 cooldown_windows: int = 5) -> None:
        if open_after < 1 or resolve_after < 1 or cooldown_windows < 0:
            raise ValueError("open_after and resolve_after must be >= 1, cooldown_windows >= 0")
        self.open_after = open_after
        self.resolve_after = resolve_after
        self.cooldown_windows = cooldown_windows
        self._reset()
        _LIVE.add(self)

    def open_counts(self) -> collections.Counter[tuple[str, str]]:
        """(category, severity) -> incidents open now (escalated ones at their severity)."""
        return collections.Counter((i.category, i.severity) for v in self._versions.values()
                                   for i in v.incidents.values() if i.phase == "open")

    def _reset(self) -> None:
        self._versions: dict[tuple[str, str], _Version] = {}

    @classmethod
    def from_settings(cls, settings: IncidentSettings) -> Self:
        return cls(settings.open_after, settings.resolve_after, settings.cooldown_windows)

    @property
    def phases(self) -> dict[str, Phase]:
        """Dedup key -> phase, for every key the tracker still holds."""
        return {key: inc.phase for v in self._versions.values()
                for key, inc in sorted(v.incidents.items())}

    def incident_metrics(self, model: str, version: str) -> dict[str, str]:
        """Feature -> the metric that started its incident, for the version's incidents in
        any phase."""
        version_state = self._versions.get((model, version))
        return {} if version_state is None else {
            i.feature: i.metric for i in version_state.incidents.values()}

    def update(self, evaluation: Evaluation) -> list[Alert]:
        """Apply one window; the alerts it causes, ordered by dedup key."""
        name = (evaluation.model, evaluation.version)
        version = self._versions.get(name)
        if version is not None and evaluation.window_start <= version.last_window_start:
            return []
        if version is None:
            version = self._versions[name] = _Version(evaluation.window_start, {})
        version.last_window_start = evaluation.window_start
        verdicts = {f.dedup_key: f for f in evaluation.findings}
        keys = version.incidents.keys() | {f.dedup_key for f in evaluation.bad}
        alerts = [alert for key in sorted(keys)
                  if (alert := self._step(version.incidents, key, verdicts.get(key)))]
        if not version.incidents:
            del self._versions[name]
        return alerts

    def _step(self, incidents: dict[str, _Incident], key: str,
              finding: Finding | None) -> Alert | None:
        incident = incidents.get(key)
        bad = finding is not None and finding.bad
        if incident is None:
            assert finding is not None and finding.severity is not None
            incident = incidents[key] = _Incident(
                finding.model, finding.version, finding.feature, finding.metric,
                finding.category, "pending", finding.severity, finding.window_start,
                finding.window_end)
        elif incident.phase == "cooling":
            incident.cooldown_left -= 1
            if incident.cooldown_left <= 0:
                del incidents[key]
            return None
        elif incident.phase == "pending":
            if finding is None:  # not judged this window (a quiet feature's span filling up)
                return None
            if not bad:
                del incidents[key]
                return None
            assert finding is not None
            incident.add_bad(finding)
            if finding.severity == "critical":
                incident.severity = "critical"
        elif finding is None:
            return None
        elif bad:
            incident.add_bad(finding)
            if finding.severity == "critical" and incident.severity == "warning":
                incident.severity = "critical"
                return self._alert(key, incident, "escalated", finding)
            return None
        else:
            incident.good_streak += 1
            if incident.good_streak < self.resolve_after:
                return None
            incident.phase, incident.cooldown_left = "cooling", self.cooldown_windows
            if self.cooldown_windows == 0:
                del incidents[key]
            return self._alert(key, incident, "resolved", finding)
        assert finding is not None
        if incident.bad_windows < self.open_after and not finding.opens_at_once:
            return None
        incident.phase = "open"
        return self._alert(key, incident, "open", finding)

    def _alert(self, key: str, incident: _Incident, state: State, finding: Finding) -> Alert:
        return Alert(alert_id(key, incident.first_seen), key, state, incident.severity,
                     incident.model, incident.version, incident.feature, finding.metric,
                     finding.value, finding.threshold, finding.window_start,
                     finding.window_end, incident.first_seen, incident.last_seen,
                     self._summary(incident, state, finding))

    def _summary(self, incident: _Incident, state: State, finding: Finding) -> str:
        v = incident.version
        head = f"{incident.model} {'v' if v[:1].isdigit() else ''}{v}: "
        if incident.category == "pipeline":  # the job in the place of the model
            head = f"pipeline {incident.model}: "
        elif incident.category == "chain":  # caller and callee: model and feature
            head = f"service chain {incident.model} → {incident.feature}: "
        elif incident.category == "performance":  # feature "quality" or "labels"
            head += "model quality " if incident.feature == "quality" else f"{incident.feature} "
        elif incident.category == "service":  # feature "latency" or "errors"
            head += f"service {incident.feature} "
        elif incident.category == "outcome":  # feature "outcome.<name>"
            head += f"outcome '{incident.feature.removeprefix('outcome.')}' "
        elif incident.feature:
            head += f"feature '{incident.feature}' "
        since = datetime.datetime.fromtimestamp(incident.first_seen / 1000, datetime.UTC)
        when = since.strftime("%Y-%m-%d %H:%M UTC")
        if state == "resolved":
            return (f"{head}back to normal ({finding.reason}) for "
                    f"{_windows(self.resolve_after)}; bad since {when}")
        if state == "escalated":
            return (f"{head}escalated to critical ({finding.reason}); bad in "
                    f"{_windows(incident.bad_windows)} since {when}")
        verb = {"drift": "drifted", "performance": "degraded", "service": "degraded",
                "data_quality": "failed a data-quality check", "outcome": "got worse",
                "pipeline": "broke its SLA", "chain": "degraded"}.get(
            incident.category, "out of bounds")
        return f"{head}{verb} ({finding.reason}) for {_windows(incident.bad_windows)} since {when}"

    def to_dict(self) -> dict[str, Any]:
        """The settings and state as plain JSON-able data, for checkpointing."""
        return {
            "open_after": self.open_after, "resolve_after": self.resolve_after,
            "cooldown_windows": self.cooldown_windows,
            "versions": [
                {"model": model, "version": version, "last_window_start": v.last_window_start,
                 "incidents": {k: dataclasses.asdict(i) for k, i in sorted(v.incidents.items())}}
                for (model, version), v in sorted(self._versions.items())],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], settings: IncidentSettings | None = None) -> Self:
        """Restore :meth:`to_dict` output; ``settings``, when given, replace the saved ones."""
        try:
            tracker = (cls.from_settings(settings) if settings is not None else
                       cls(data["open_after"], data["resolve_after"], data["cooldown_windows"]))
            for v in data["versions"]:
                incidents = {k: _Incident(**i) for k, i in v["incidents"].items()}
                tracker._versions[v["model"], v["version"]] = _Version(
                    int(v["last_window_start"]), incidents)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not an IncidentTracker state: {e!r}") from None
        return tracker


#: Every tracker alive in this process: the state of the partitions it holds (a tracker of
#: a revoked partition goes with its state), read for the open-incidents metric.
_LIVE: weakref.WeakSet[IncidentTracker] = weakref.WeakSet()


def open_incidents() -> collections.Counter[tuple[str, str]]:
    """(category, severity) -> incidents open in every tracker this process holds."""
    total: collections.Counter[tuple[str, str]] = collections.Counter()
    for tracker in list(_LIVE):
        total.update(tracker.open_counts())
    return total


def _windows(n: int) -> str:
    return f"{n} window" if n == 1 else f"{n} windows"
