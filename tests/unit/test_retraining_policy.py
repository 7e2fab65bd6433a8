"""The retraining policy: which alerts ask for retraining, its checks, one id per incident."""

from __future__ import annotations

import pytest

from driftline.models.alerting.alerts import Alert, alert_id
from driftline.models.alerting.retraining import (
    Evidence,
    RetrainingPolicy,
    request_document,
    request_id,
)
from driftline.models.alerting.rules import RulesConfig, RulesError


def alert(state: str = "open", severity: str = "critical", last_seen: int = 180_000,
          key: str = "drift:m:v1:x") -> Alert:
    return Alert(alert_id(key, 0), key, state, severity, "m", "v1",  # type: ignore[arg-type]
                 "x", "psi", 0.4, 0.25, 120_000, last_seen, 0, last_seen, "m v1: x drifted")


def test_the_policy_is_off_unless_the_rules_file_turns_it_on_and_models_override_it() -> None:
    assert not RulesConfig.default().retraining_policy("m").enabled
    rules = RulesConfig.from_toml('[retraining]\nenabled = true\nmin_open_minutes = 2\n'
                                  '[models."m".retraining]\nmin_label_coverage = 0.5\n'
                                  'categories = ["performance"]\n')
    assert rules.retraining_policy("m") == RetrainingPolicy(
        True, ("performance",), "critical", 2, 0.5)
    assert rules.retraining_policy("other") == RetrainingPolicy(True, min_open_minutes=2)
    for bad, message in [("enabled = 1", "true or false"), ("min_severity = 'info'", "warning"),
                         ("min_label_coverage = 1.5", "from 0 to 1"), ("when = 1", "unknown")]:
        with pytest.raises(RulesError, match=message):
            RulesConfig.from_toml(f"[retraining]\n{bad}\n")


def test_which_alerts_ask() -> None:
    policy = RetrainingPolicy(enabled=True, min_open_minutes=2, min_label_coverage=0.3)

    def wants(a: Alert) -> bool:
        return policy.wants(a.state, a.severity, a.dedup_key.split(":")[0],
                            first_seen=a.first_seen, last_seen=a.last_seen)

    assert wants(alert())
    assert wants(alert(state="escalated"))
    assert not wants(alert(state="resolved"))
    assert not wants(alert(severity="warning"))
    assert not wants(alert(last_seen=60_000))  # bad for one minute only
    assert not wants(alert(key="service:m:v1:latency"))
    assert policy.covered(0.3) and not policy.covered(0.2) and not policy.covered(None)
    assert RetrainingPolicy(enabled=True).covered(None)


def test_one_request_id_per_incident_whatever_alert_of_it_asks() -> None:
    opened, escalated = alert(), alert(state="escalated", last_seen=240_000)
    assert request_id(opened) == request_id(escalated)
    assert request_id(opened) != request_id(alert(key="drift:m:v1:y"))
    doc = request_document(opened, Evidence((("x", "psi", 0.4),), 0.8, 0.9, "p-1"), 5)
    assert doc["drifted_features"] == [{"feature": "x", "metric": "psi", "value": 0.4}]
    assert (doc["label_coverage"], doc["reference_id"], doc["window_start"]) == (0.8, "p-1", 0)
    assert doc["incident"]["category"] == "drift"
