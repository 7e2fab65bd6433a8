"""The retraining loop: which incidents ask for a model to be retrained, and the request
that carries their evidence.

A policy lives in the rules file, for every model and per model::

    [retraining]
    enabled = true
    categories = ["drift", "performance"]   # the incidents that count
    min_severity = "critical"
    min_open_minutes = 10                   # bad for at least this long (first to last bad)
    min_label_coverage = 0.3                # of the version's predictions over the incident

    [models."fraud-detector".retraining]
    min_label_coverage = 0.6

It is judged on each ``open`` or ``escalated`` alert. A request is made once per incident:
its id is a UUID5 of the incident's id, so a replay or a retry of the same alert makes the
same request, and a receiver that keeps ids (an Airflow DAG run id, say) starts one run.

>>> policy = RetrainingPolicy(enabled=True, min_open_minutes=1)
>>> policy.wants("open", "critical", "drift", first_seen=0, last_seen=120_000)
True
>>> policy.wants("open", "warning", "drift", first_seen=0, last_seen=120_000)
False
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # alerts imports the rules, which import this module
    from driftline.models.alerting.alerts import Alert

__all__ = ["POLICY_KEYS", "Evidence", "RetrainingPolicy", "check_policy", "request_document"]

POLICY_KEYS = ("enabled", "categories", "min_severity", "min_open_minutes", "min_label_coverage")
_RANK = {"warning": 1, "critical": 2}
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://driftline.dev/retraining")


@dataclasses.dataclass(frozen=True)
class RetrainingPolicy:
    enabled: bool = False
    categories: tuple[str, ...] = ("drift", "performance")
    min_severity: str = "critical"
    min_open_minutes: float = 0.0
    #: 0: no labels needed; else the version's labelled share over the incident.
    min_label_coverage: float = 0.0

    def wants(self, state: str, severity: str, category: str, *, first_seen: int,
              last_seen: int) -> bool:
        """Whether an alert of this kind asks for retraining (label coverage apart)."""
        return (self.enabled and state in ("open", "escalated")
                and category in self.categories
                and _RANK.get(severity, 0) >= _RANK[self.min_severity]
                and (last_seen - first_seen) / 60_000 >= self.min_open_minutes)

    def covered(self, coverage: float | None) -> bool:
        return self.min_label_coverage <= 0 or (coverage is not None
                                                 and coverage >= self.min_label_coverage)


def check_policy(where: str, raw: Any) -> dict[str, Any]:
    """The keys of one ``retraining`` table, checked; ValueError with a one-line reason."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = raw.keys() - set(POLICY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; use {list(POLICY_KEYS)}")
    out = dict(raw)
    if "enabled" in out and not isinstance(out["enabled"], bool):
        raise ValueError(f"{where}.enabled must be true or false")
    if "categories" in out:
        if not (isinstance(out["categories"], list)
                and all(isinstance(c, str) for c in out["categories"])):
            raise ValueError(f"{where}.categories must be a list of strings")
        out["categories"] = tuple(out["categories"])
    if "min_severity" in out and out["min_severity"] not in _RANK:
        raise ValueError(f"{where}.min_severity must be warning or critical")
    for key, top in (("min_open_minutes", math.inf), ("min_label_coverage", 1.0)):
        value = out.get(key, 0.0)
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not 0 <= value <= top):
            raise ValueError(f"{where}.{key} must be a number from 0 to {top:g}")
    return out


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the incident's windows say, read from ClickHouse when the request is made."""

    #: (feature, metric, worst value) of the scores judged bad over the incident.
    drifted_features: tuple[tuple[str, str, float], ...] = ()
    #: The version's labelled predictions over the incident: coverage and accuracy.
    label_coverage: float | None = None
    accuracy: float | None = None
    reference_id: str = ""


def request_id(alert: Alert) -> str:
    """One request per incident: the same for every alert of it, and for a replay."""
    return str(uuid.uuid5(_NAMESPACE, f"{alert.dedup_key}@{alert.first_seen}"))


def request_document(alert: Alert, evidence: Evidence, requested_at_ms: int) -> dict[str, Any]:
    """The retraining request: JSON on the retraining topic and to its webhooks."""
    return {
        "type": "retraining_request", "id": request_id(alert), "model": alert.model,
        "version": alert.version, "requested_at": requested_at_ms,
        "reason": alert.summary,
        "incident": {"id": alert.id, "dedup_key": alert.dedup_key,
                     "category": alert.dedup_key.split(":", 1)[0], "severity": alert.severity,
                     "feature": alert.feature, "metric": alert.metric, "value": alert.value,
                     "threshold": alert.threshold},
        "window_start": alert.first_seen, "window_end": alert.last_seen,
        "drifted_features": [{"feature": f, "metric": m, "value": v}
                             for f, m, v in evidence.drifted_features],
        "label_coverage": evidence.label_coverage, "accuracy": evidence.accuracy,
        "reference_id": evidence.reference_id,
    }


def policy_for(layers: Mapping[str | None, Mapping[str, Any]], model: str) -> RetrainingPolicy:
    """The policy of ``model``: its own keys over the file's ``[retraining]`` table."""
    fields = {**layers.get(None, {}), **layers.get(model, {})}
    return RetrainingPolicy(**fields)
