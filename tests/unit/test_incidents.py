"""Incidents: the open/escalate/resolve/cooldown state machine, checkpoints, alert JSON."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from driftline.models.alerting.alerts import Alert, alert_id
from driftline.models.alerting.evaluation import Evaluation, Finding
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import IncidentSettings

SCHEMA = json.loads(
    (resources.files("driftline.models") / "schemas" / "alert.json").read_text("utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
T0 = 1_764_235_740_000
WINDOW = 60_000
STATUSES = ("warning", "critical", "good", "skip")
LEVELS = {"warning": (0.15, 0.1, "psi 0.15 ≥ warning 0.1"),
          "critical": (0.3, 0.25, "psi 0.3 ≥ critical 0.25"),
          "good": (0.01, 0.1, "psi 0.01 < warning 0.1")}


def window(i: int, statuses: dict[str, str], version: str = "1") -> Evaluation:
    """Window ``i`` of model "m": feature -> warning | critical | good | skip (not judged)."""
    start = T0 + i * WINDOW
    findings = tuple(
        Finding("m", version, feature, "psi", start, start + WINDOW,
                None if status == "good" else status,  # type: ignore[arg-type]
                *LEVELS[status])
        for feature, status in sorted(statuses.items()) if status != "skip")
    return Evaluation("m", version, start, start + WINDOW, findings)


def run(tracker: IncidentTracker, rows: list[dict[str, str]], first: int = 0) -> list[Alert]:
    return [a for i, row in enumerate(rows, first) for a in tracker.update(window(i, row))]


def reference(statuses: list[str], open_after: int, resolve_after: int,
              cooldown: int) -> list[tuple[int, str, str, int]]:
    """The documented semantics, written plainly: (window, state, severity, first window)."""
    events: list[tuple[int, str, str, int]] = []
    phase, streak, good, cool, severity, first = "idle", 0, 0, 0, "warning", 0
    for i, status in enumerate(statuses):
        bad = status in ("warning", "critical")
        if phase == "cooling":
            cool -= 1
            phase = "cooling" if cool > 0 else "idle"
        elif phase == "open":
            if bad:
                good = 0
                if status == "critical" and severity == "warning":
                    severity = "critical"
                    events.append((i, "escalated", severity, first))
            elif status == "good":
                good += 1
                if good == resolve_after:
                    events.append((i, "resolved", severity, first))
                    phase, cool = ("cooling" if cooldown else "idle"), cooldown
        elif bad:
            if phase == "idle":
                phase, streak, severity, first = "pending", 0, "warning", i
            streak += 1
            severity = "critical" if status == "critical" else severity
            if streak >= open_after:
                phase, good = "open", 0
                events.append((i, "open", severity, first))
        elif status == "good":  # a window not judged leaves a streak as it is
            phase = "idle"
    return events


SETTINGS = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(0, 3))
SEQUENCES = st.lists(st.lists(st.sampled_from(STATUSES), max_size=40), min_size=1, max_size=3)


def rows_of(sequences: list[list[str]]) -> list[dict[str, str]]:
    n = max(len(s) for s in sequences)
    return [{f"f{k}": (s[i] if i < len(s) else "skip") for k, s in enumerate(sequences)}
            for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(SETTINGS, SEQUENCES)
def test_state_machine_follows_the_documented_semantics(
        params: tuple[int, int, int], sequences: list[list[str]]) -> None:
    open_after, resolve_after, cooldown = params
    rows = rows_of(sequences)
    alerts = run(IncidentTracker(*params), rows)
    for k in range(len(sequences)):
        key = f"drift:m:1:f{k}:psi"
        mine = [a for a in alerts if a.dedup_key == key]
        padded = [row[f"f{k}"] for row in rows]
        expected = reference(padded, open_after, resolve_after, cooldown)
        assert [((a.window_start - T0) // WINDOW, a.state, a.severity, a.first_seen)
                for a in mine] == [(i, s, sev, T0 + f * WINDOW) for i, s, sev, f in expected]
        states = [a.state for a in mine]
        text = "".join({"open": "o", "escalated": "e", "resolved": "r"}[s] for s in states)
        # never two opens without a resolve between; a resolve always follows an open
        assert re.fullmatch(r"(oe?r)*(oe?)?", text)
        for a in mine:
            assert a.id == alert_id(key, a.first_seen)
            assert a.first_seen <= a.last_seen
            VALIDATOR.validate(orjson.loads(a.to_json()))
        opens = [(a.window_start - T0) // WINDOW for a in mine if a.state == "open"]
        resolves = [(a.window_start - T0) // WINDOW for a in mine if a.state == "resolved"]
        for r, o in zip(resolves, opens[1:], strict=False):  # cooldown respected
            assert o >= r + cooldown + open_after


@settings(max_examples=200, deadline=None)
@given(SETTINGS, SEQUENCES, st.integers(0, 40))
def test_checkpoint_mid_sequence_changes_nothing(
        params: tuple[int, int, int], sequences: list[list[str]], cut: int) -> None:
    rows = rows_of(sequences)
    whole = run(IncidentTracker(*params), rows)
    first = IncidentTracker(*params)
    before = run(first, rows[:cut])
    state = json.loads(json.dumps(first.to_dict()))
    restored = IncidentTracker.from_dict(state)
    assert restored.to_dict() == first.to_dict()
    after = run(restored, rows[cut:], first=min(cut, len(rows)))
    assert before + after == whole
    # a replay of applied windows is ignored while the version has state; without state it
    # re-emits exactly what it emitted the first time (same ids: consumers deduplicate)
    assert run(restored, rows[:cut]) in ([], before)
    assert run(IncidentTracker(*params), rows) == whole


@given(SETTINGS, SEQUENCES)
def test_state_is_bounded(params: tuple[int, int, int], sequences: list[list[str]]) -> None:
    _, resolve_after, cooldown = params
    rows = rows_of(sequences)
    tracker = IncidentTracker(*params)
    run(tracker, rows)
    assert len(tracker.phases) <= len(sequences)
    calm = [{f"f{k}": "good" for k in range(len(sequences))}] * (resolve_after + cooldown)
    run(tracker, calm, first=len(rows))
    assert tracker.phases == {}
    assert tracker.to_dict()["versions"] == []


def test_one_incident_end_to_end() -> None:
    tracker = IncidentTracker(open_after=2, resolve_after=2, cooldown_windows=2)
    statuses = ["warning", "good", "warning", "warning", "critical", "critical", "good", "skip",
                "warning", "good", "good", "critical", "critical", "critical", "critical"]
    alerts = run(tracker, [{"amount": s} for s in statuses])
    assert [(a.state, a.severity, (a.window_start - T0) // WINDOW) for a in alerts] == [
        ("open", "warning", 3), ("escalated", "critical", 4), ("resolved", "critical", 10),
        ("open", "critical", 14)]
    opened, escalated, resolved, again = alerts
    assert opened.id == escalated.id == resolved.id != again.id
    assert (opened.first_seen, opened.last_seen) == (T0 + 2 * WINDOW, T0 + 4 * WINDOW)
    assert resolved.last_seen == T0 + 9 * WINDOW
    assert (resolved.value, resolved.threshold) == (0.01, 0.1)
    assert opened.summary == ("m v1: feature 'amount' drifted (psi 0.15 ≥ warning 0.1) for "
                              "2 windows since 2025-11-27 09:31 UTC")
    assert escalated.summary == ("m v1: feature 'amount' escalated to critical (psi 0.3 ≥ "
                                 "critical 0.25); bad in 3 windows since 2025-11-27 09:31 UTC")
    assert resolved.summary == ("m v1: feature 'amount' back to normal (psi 0.01 < warning "
                                "0.1) for 2 windows; bad since 2025-11-27 09:31 UTC")


def test_versions_are_separate_and_windows_in_order() -> None:
    tracker = IncidentTracker.from_settings(IncidentSettings(1, 1, 0))
    assert [a.version for a in tracker.update(window(0, {"a": "warning"}, "1"))] == ["1"]
    assert [a.version for a in tracker.update(window(0, {"a": "warning"}, "2"))] == ["2"]
    assert tracker.update(window(0, {"a": "good"}, "1")) == []  # replayed window: ignored
    assert [a.state for a in tracker.update(window(1, {"a": "good"}, "1"))] == ["resolved"]
    assert tracker.phases == {"drift:m:2:a:psi": "open"}


def test_settings_and_bad_state() -> None:
    with pytest.raises(ValueError, match="open_after and resolve_after must be >= 1"):
        IncidentTracker(open_after=0)
    tracker = IncidentTracker(3, 4, 5)
    restored = IncidentTracker.from_dict(tracker.to_dict(), IncidentSettings(1, 1, 1))
    assert (restored.open_after, restored.resolve_after, restored.cooldown_windows) == (1, 1, 1)
    with pytest.raises(ValueError, match="not an IncidentTracker state"):
        IncidentTracker.from_dict({"open_after": 1})


# --- the alert document ------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=20)
MS = st.integers(0, 2**53)
ALERTS = st.builds(
    Alert, id=st.uuids(version=5).map(str), dedup_key=TEXT.map(lambda s: "drift:" + s),
    state=st.sampled_from(["open", "escalated", "resolved"]),
    severity=st.sampled_from(["warning", "critical"]), model=TEXT.map(lambda s: "m" + s),
    version=TEXT, feature=TEXT, metric=TEXT.map(lambda s: "psi" + s),
    value=st.floats(allow_nan=False, allow_infinity=False),
    threshold=st.floats(allow_nan=False, allow_infinity=False), window_start=MS,
    window_end=MS, first_seen=MS, last_seen=MS, summary=TEXT.map(lambda s: "s" + s))


@given(ALERTS)
def test_random_alerts_validate_and_round_trip(alert: Alert) -> None:
    doc = orjson.loads(alert.to_json())
    VALIDATOR.validate(doc)
    assert list(doc) == list(SCHEMA["required"])
    assert Alert.from_json(alert.to_json()) == alert
    assert alert.key == alert.model.encode()


@pytest.mark.parametrize("example", SCHEMA["examples"])
def test_schema_examples(example: dict[str, Any]) -> None:
    VALIDATOR.validate(example)
    assert orjson.loads(Alert.from_json(json.dumps(example)).to_json()) == example


def test_schema_is_valid_and_documented() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == "https://driftline.dev/schemas/alert.json"
    assert all(p.get("description") for p in SCHEMA["properties"].values())


@pytest.mark.parametrize(("change", "message"), [
    ({"state": "closed"}, "alert state must be one of"),
    ({"severity": "info"}, "alert severity must be one of"),
    ({"value": "high"}, "alert field 'value' has the wrong type"),
    ({"window_start": 1.5}, "alert field 'window_start' has the wrong type"),
    ({"window_end": True}, "alert field 'window_end' has the wrong type"),
    ({"extra": 1}, r"unknown \['extra'\]"),
    ({"summary": None}, "alert field 'summary' has the wrong type"),
])
def test_from_json_rejects(change: dict[str, Any], message: str) -> None:
    doc = {**SCHEMA["examples"][0], **change}
    with pytest.raises(ValueError, match=message):
        Alert.from_json(json.dumps(doc))
    with pytest.raises(ValueError, match="missing"):
        Alert.from_json(b'{"id": "x"}')
    with pytest.raises(ValueError, match="must be finite"):
        Alert(**{**SCHEMA["examples"][0], "value": float("nan")})


def test_a_window_not_judged_leaves_a_pending_streak_as_it_is() -> None:
    """A quiet feature is judged on merged windows, with unjudged windows between."""
    tracker = IncidentTracker(open_after=2, resolve_after=1, cooldown_windows=0)
    alerts = run(tracker, [{"amount": s} for s in ["warning", "skip", "skip", "warning"]])
    assert [(a.state, (a.window_start - T0) // WINDOW, a.first_seen) for a in alerts] == [
        ("open", 3, T0)]
