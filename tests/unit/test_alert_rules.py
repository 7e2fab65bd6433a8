"""Alert rules: config parsing and overrides, Benjamini-Hochberg, and judging one window."""

from __future__ import annotations

import json
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import false_discovery_control, norm

from driftline.models.alerting.evaluation import Score, Skipped, evaluate_window
from driftline.models.alerting.fdr import benjamini_hochberg, bh_adjusted
from driftline.models.alerting.rules import (
    DEFAULTS,
    IncidentSettings,
    RulesConfig,
    RulesError,
    Threshold,
)

ROOT = Path(__file__).resolve().parents[2]
RULES = RulesConfig.default()
T0 = 1_764_235_740_000


# --- defaults --------------------------------------------------------------------------

def test_defaults() -> None:
    psi = RULES.thresholds("any", "x", "psi")
    assert (psi.kind, psi.direction, psi.warn, psi.critical) == ("threshold", "above", 0.1, 0.25)
    assert (psi.min_windows, psi.min_count, psi.fdr_q, psi.enabled) == (3, 500, 0.05, True)
    assert (RULES.thresholds("m", "x", "js").warn, RULES.thresholds("m", "x", "js").critical) == (
        0.1, 0.2)
    assert RULES.thresholds("m", "x", "wasserstein_std").critical == 0.5
    assert RULES.thresholds("m", "x", "unseen_share").critical == 0.25
    assert not RULES.thresholds("m", "x", "wasserstein").enabled
    for test in ("ks", "chi2"):
        rule = RULES.thresholds("m", "x", test)
        assert (rule.kind, rule.effect_metric, rule.effect_floor) == ("test", "psi", 0.05)
    for detector in ("adwin", "kswin", "page_hinkley"):
        rule = RULES.thresholds("m", "x", detector)
        assert (rule.severity(1.0), rule.severity(0.0)) == ("warning", None)
    assert RULES.incidents == IncidentSettings(open_after=2, resolve_after=3, cooldown_windows=5)


def test_shipped_file_is_the_defaults() -> None:
    assert RulesConfig.from_file(ROOT / "driftline.toml") == RULES


def test_shipped_example_override_parses() -> None:
    text = (ROOT / "driftline.toml").read_text("utf-8").split("# Overrides")[1]
    lines = [line.lstrip("# ") for line in text.splitlines()]
    example = "\n".join(x for x in lines if x.startswith("[") or re.match(r"\w+ = ", x))
    rules = RulesConfig.from_toml(example)
    assert rules.thresholds("fraud-detector", "amount", "psi").critical == 0.3
    assert rules.thresholds("fraud-detector", "amount", "psi").min_count == 50
    assert rules.thresholds("fraud-detector", "other", "psi").min_count == 500
    assert rules.thresholds("fraud-detector", "amount", "wasserstein").critical == 50.0
    assert not rules.thresholds("fraud-detector", "merchant_id", "chi2").enabled
    assert rules.thresholds("fraud-detector", "amount", "accuracy").direction == "below"


def _bins(shift: float) -> tuple[np.ndarray, np.ndarray]:
    edges = norm.ppf(np.linspace(0.0, 1.0, 11))
    return np.diff(norm.cdf(edges)), np.diff(norm.cdf(edges - shift))


@pytest.mark.parametrize(("shift", "worst"), [(0.05, None), (0.5, "warning")])
def test_default_thresholds_fit_a_mean_shift(shift: float, worst: str | None) -> None:
    """A 0.5 sd shift reaches at least warn on psi, js and wasserstein_std; 0.05 sd none."""
    ref, win = _bins(shift)
    values = {"psi": float(np.sum((win - ref) * np.log(win / ref))),
              "js": float(jensenshannon(ref, win, base=2)), "wasserstein_std": shift}
    for metric, value in values.items():
        severity = RULES.thresholds("m", "x", metric).severity(value)
        assert (severity is None) if worst is None else (severity is not None), (metric, value)


def test_effect_floor_is_about_a_quarter_sd() -> None:
    ref, win = _bins(0.25)
    assert 0.05 <= float(np.sum((win - ref) * np.log(win / ref))) < 0.1


# --- overrides ---------------------------------------------------------------------------

OVERRIDES = """
[defaults]
min_count = 200
[metrics.psi]
warn = 0.12
[models."fraud-detector"]
min_windows = 5
[models."fraud-detector".metrics.psi]
critical = 0.3
[models."fraud-detector".features.amount]
min_count = 50
fdr_q = 0.01
[models."fraud-detector".features.amount.metrics.psi]
warn = 0.2
[models."fraud-detector".features."user:id".metrics.psi]
enabled = false
"""


def test_overrides_resolve_key_by_key() -> None:
    rules = RulesConfig.from_toml(OVERRIDES)
    amount = rules.thresholds("fraud-detector", "amount", "psi")
    assert (amount.warn, amount.critical, amount.min_count, amount.min_windows) == (
        0.2, 0.3, 50, 5)
    assert rules.thresholds("fraud-detector", "amount", "ks").fdr_q == 0.01
    other = rules.thresholds("fraud-detector", "age", "psi")
    assert (other.warn, other.critical, other.min_count, other.min_windows) == (0.12, 0.3, 200, 5)
    churn = rules.thresholds("churn", "amount", "psi")
    assert (churn.warn, churn.critical, churn.min_count, churn.min_windows) == (0.12, 0.25, 200, 3)
    assert not rules.thresholds("fraud-detector", "user:id", "psi").enabled
    assert rules.incidents == RULES.incidents


def test_unknown_metric() -> None:
    with pytest.raises(KeyError, match=r"metrics\.precision_at_10"):
        RULES.thresholds("m", "x", "precision_at_10")
    assert RULES.rule("m", "x", "precision_at_10") is None


def test_from_file_toml_yaml_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "rules.toml"
    toml.write_text("[incidents]\nopen_after = 4\n", "utf-8")
    assert RulesConfig.from_file(toml).incidents.open_after == 4
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(json.dumps({"metrics": {"psi": {"warn": 0.15}}}), "utf-8")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(RulesError, match=r"rules.yaml: YAML rules need PyYAML"):
        RulesConfig.from_file(yaml_file)
    fake = types.ModuleType("yaml")
    fake.safe_load = json.loads  # type: ignore[attr-defined]  # JSON is YAML
    fake.YAMLError = ValueError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "yaml", fake)
    assert RulesConfig.from_file(yaml_file).thresholds("m", "x", "psi").warn == 0.15
    with pytest.raises(RulesError, match=r"rules\.ini: unknown rules format"):
        RulesConfig.from_file(tmp_path / "rules.ini")
    with pytest.raises(RulesError, match="cannot read the rules file"):
        RulesConfig.from_file(tmp_path / "missing.toml")


@pytest.mark.parametrize(("text", "message"), [
    ("[metrics.psi]\nwarm = 0.2", "metrics.psi.warm: unknown key; did you mean 'warn'?"),
    ("[alerts]\nx = 1", "alerts: unknown key; expected one of defaults, incidents"),
    ("[defaults]\nmin_cout = 5", "defaults.min_cout: unknown key; did you mean 'min_count'?"),
    ("[metrics.psi]\nwarn = 'high'", "metrics.psi.warn: expected a finite number, got 'high'"),
    ("[metrics.psi]\nwarn = nan", "metrics.psi.warn: expected a finite number"),
    ("[defaults]\nmin_count = -1", "defaults.min_count: expected a whole number >= 0"),
    ("[defaults]\nmin_count = true", "defaults.min_count: expected a whole number >= 0"),
    ("[defaults]\nfdr_q = 0", "defaults.fdr_q: a false discovery rate lies in (0, 1]"),
    ("[incidents]\nopen_after = 0", "incidents.open_after: expected a whole number >= 1"),
    ("[metrics.psi]\ndirection = 'up'", "metrics.psi.direction: expected one of 'above', 'below'"),
    ("[metrics.psi]\nwarn = 0.3", "metrics.psi: critical 0.25 must be at or above warn 0.3"),
    ("[metrics.acc]\ndirection = 'below'\nwarn = 0.8\ncritical = 0.9",
     "metrics.acc: critical 0.9 must be at or below warn 0.8"),
    ("[metrics.ks]\nwarn = 0.1", "metrics.ks.warn: a test metric has no warn level"),
    ("[metrics.psi]\neffect_metric = 'js'", "metrics.psi.effect_metric: only a metric with kind"),
    ("[metrics.latency]\ndirection = 'above'", "metrics.latency: set warn and/or critical"),
    ("[metrics.ks]\neffect_floor = -1", "metrics.ks.effect_floor: an effect floor is >= 0"),
    ("[metrics.psi]\ncategory = 'a:b'", "metrics.psi.category: expected a non-empty name"),
    ("[metrics.psi]\nenabled = 'no'", "metrics.psi.enabled: expected true or false"),
    ("models = 3", "models: expected a table, got int"),
    ('[models."m".features.f]\nfeatures = {}',
     "models.m.features.f.features: unknown key; expected one of min_windows"),
    ('[models."fraud detector".metrics.psi]\nwarn = 0.5',
     'models."fraud detector".metrics.psi: critical 0.25 must be at or above warn 0.5'),
    ("[metrics.psi\nwarn = 1", "not valid TOML"),
])
def test_errors_name_the_key_on_one_line(text: str, message: str) -> None:
    with pytest.raises(RulesError) as error:
        RulesConfig.from_toml(text, "rules.toml")
    assert str(error.value).startswith("rules.toml: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_mapping_errors_name_the_source() -> None:
    with pytest.raises(RulesError, match=r"^<mapping>: metrics\.psi: expected a table"):
        RulesConfig.from_mapping({"metrics": {"psi": 0.1}})
    assert RulesConfig.from_mapping(DEFAULTS) == RULES


@pytest.mark.parametrize(("direction", "value", "expected"), [
    ("above", 0.09, None), ("above", 0.1, "warning"), ("above", 0.25, "critical"),
    ("below", 0.91, None), ("below", 0.9, "warning"), ("below", 0.8, "critical"),
])
def test_threshold_directions(direction: str, value: float, expected: str | None) -> None:
    warn, critical = (0.1, 0.25) if direction == "above" else (0.9, 0.8)
    rule = Threshold("m", direction=direction, warn=warn, critical=critical)  # type: ignore[arg-type]
    assert rule.severity(value) == expected
    assert Threshold("m", warn=None, critical=0.5).bound(None) == 0.5


# --- Benjamini-Hochberg ------------------------------------------------------------------

P_VALUES = st.lists(st.one_of(st.sampled_from([0.0, 1e-12, 0.01, 0.05, 1.0]),
                              st.floats(0.0, 1.0)), min_size=1, max_size=60)


@given(P_VALUES, st.floats(1e-6, 1.0))
def test_bh_matches_scipy(p: list[float], q: float) -> None:
    expected = false_discovery_control(np.array(p), method="bh")
    np.testing.assert_array_equal(bh_adjusted(p), expected)
    np.testing.assert_array_equal(benjamini_hochberg(p, q), expected <= q)


def test_bh_edges() -> None:
    assert benjamini_hochberg([], 0.05).tolist() == []
    with pytest.raises(ValueError, match="NaN is not a p-value"):
        bh_adjusted([0.1, math.nan])
    with pytest.raises(ValueError, match="q must lie in"):
        benjamini_hochberg([0.1], 0.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        bh_adjusted(np.zeros((2, 2)))


# --- evaluate_window ---------------------------------------------------------------------

def _score(feature: str, metric: str, value: float, p: float | None = None,
           n: int = 1000, model: str = "m") -> Score:
    return Score(model, "1", feature, metric, value, p, 50_000, n)


def _evaluate(scores: list[Score], seen: int = 3, rules: RulesConfig = RULES,
              model: str = "m") -> dict[tuple[str, str], object]:
    ev = evaluate_window(rules, model, "1", T0, T0 + 60_000, scores, seen)
    assert (ev.model, ev.window_start, ev.window_end) == (model, T0, T0 + 60_000)
    out: dict[tuple[str, str], object] = {(f.feature, f.metric): f.severity for f in ev.findings}
    out.update({(s.feature, s.metric): s for s in ev.skipped})
    return out


def test_min_windows() -> None:
    scores = [_score("a", "psi", 0.4)]
    assert _evaluate(scores, seen=2)["a", "psi"] == Skipped(
        "a", "psi", "2 of min_windows 3 windows closed")
    assert _evaluate(scores, seen=3)["a", "psi"] == "critical"


def test_min_count() -> None:
    assert _evaluate([_score("a", "psi", 0.4, n=499)])["a", "psi"] == Skipped(
        "a", "psi", "499 events < min_count 500")
    assert _evaluate([_score("a", "psi", 0.4, n=500)])["a", "psi"] == "critical"


def test_effect_floor_stops_a_tiny_significant_shift_on_a_huge_window() -> None:
    tiny = [_score("a", "ks", 0.004, p=1e-30, n=1_000_000),
            _score("a", "psi", 0.001, n=1_000_000)]
    ev = evaluate_window(RULES, "m", "1", T0, T0 + 60_000, tiny, 3)
    ks = next(f for f in ev.findings if f.metric == "ks")
    assert ks.severity is None
    assert ks.reason == "ks 0.004, BH-adjusted p 1e-30 ≤ q 0.05 but psi 0.001 < floor 0.05"
    real = [_score("a", "ks", 0.05, p=1e-30, n=1_000_000), _score("a", "psi", 0.07, n=1_000_000)]
    ks = next(f for f in evaluate_window(RULES, "m", "1", T0, T0 + 60_000, real, 3).findings
              if f.metric == "ks")
    assert (ks.severity, ks.value, ks.threshold, ks.p_value) == ("warning", 0.05, 0.05, 1e-30)
    assert ks.adjusted_p == pytest.approx(1e-30)


def test_bh_across_the_features_of_the_window() -> None:
    """0.04 passes a lone 0.05 test, not one among 20; the family skips gated features."""
    scores = [_score(f"f{i:02}", "ks", 0.3, p=0.5) for i in range(18)]
    scores += [_score("hit", "ks", 0.3, p=0.001), _score("maybe", "chi2", 0.3, p=0.04)]
    scores += [_score(s.feature, "psi", 0.06) for s in scores]
    verdicts = _evaluate(scores)
    assert verdicts["hit", "ks"] == "warning"
    assert verdicts["maybe", "chi2"] is None
    alone = [s if s.feature in ("hit", "maybe") else s._replace(n_window=10) for s in scores]
    assert _evaluate(alone)["maybe", "chi2"] == "warning"


def test_per_feature_fdr_q() -> None:
    rules = RulesConfig.from_toml('[models.m.features.a]\nfdr_q = 0.001')
    scores = [_score(f, "ks", 0.3, p=0.01) for f in "ab"] + [_score(f, "psi", 0.06) for f in "ab"]
    verdicts = _evaluate(scores, rules=rules)
    assert (verdicts["a", "ks"], verdicts["b", "ks"]) == (None, "warning")


def test_threshold_directions_in_a_window() -> None:
    rules = RulesConfig.from_toml(
        "[metrics.accuracy]\ncategory = 'performance'\ndirection = 'below'\n"
        "warn = 0.9\ncritical = 0.8")
    scores = [_score(f, "accuracy", v) for f, v in [("a", 0.95), ("b", 0.85), ("c", 0.75)]]
    scores += [_score("d", "psi", 0.15), _score("d", "adwin", 1.0), _score("e", "adwin", 0.0)]
    ev = evaluate_window(rules, "m", "1", T0, T0 + 60_000, scores, 3)
    assert [(f.feature, f.metric, f.severity, f.threshold) for f in ev.findings] == [
        ("a", "accuracy", None, 0.9), ("b", "accuracy", "warning", 0.9),
        ("c", "accuracy", "critical", 0.8), ("d", "adwin", "warning", 1.0),
        ("d", "psi", "warning", 0.1), ("e", "adwin", None, 1.0)]
    assert [f.reason for f in ev.findings[:3]] == [
        "accuracy 0.95 > warning 0.9", "accuracy 0.85 ≤ warning 0.9",
        "accuracy 0.75 ≤ critical 0.8"]
    assert ev.findings[0].dedup_key == "performance:m:1:a:accuracy"
    assert [f.feature for f in ev.bad] == ["b", "c", "d", "d"]
    assert [f.feature for f in ev.good] == ["a", "e"]


def test_skips_say_why() -> None:
    scores = [_score("a", "wasserstein", 3.0), _score("a", "latency", 1.0),
              _score("a", "psi", math.nan), _score("b", "ks", 0.2, p=None),
              _score("c", "chi2", 0.2, p=0.001), _score("d", "ks", 0.2, p=1.5)]
    assert [(s.feature, s.metric, s.reason) for s in
            evaluate_window(RULES, "m", "1", T0, T0 + 60_000, scores, 3).skipped] == [
        ("a", "latency", "no rule for metric 'latency'"),
        ("a", "psi", "value nan is not finite"),
        ("a", "wasserstein", "rule disabled"),
        ("b", "ks", "p-value None is not in [0, 1]"),
        ("c", "chi2", "no psi score for the effect floor"),
        ("d", "ks", "p-value 1.5 is not in [0, 1]")]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="score for other 1 in a window of m 1"):
        _evaluate([_score("a", "psi", 0.1, model="other")])
    with pytest.raises(ValueError, match="two scores for 'a' 'psi'"):
        _evaluate([_score("a", "psi", 0.1), _score("a", "psi", 0.2)])


def test_dedup_key_escapes_separators() -> None:
    ev = evaluate_window(RULES, "a:b", "1", T0, T0 + 60_000,
                         [_score("x%y", "psi", 0.3, model="a:b")], 3)
    assert ev.findings[0].dedup_key == "drift:a%3Ab:1:x%25y:psi"
