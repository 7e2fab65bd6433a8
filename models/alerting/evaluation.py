"""One closed window's scores judged against the rules: what is bad, good, or not judged.

:func:`evaluate_window` applies, per (feature, metric) of one model version's window:

1. the gates: a rule exists and is enabled; the version has had ``min_windows`` closed
   windows (``windows_seen`` counts this one); the window holds ``min_count`` events with
   the feature present; the value (and, for a test, the p-value) is usable. A key that
   fails a gate is *skipped*, with the reason: neither bad nor good.
2. ``threshold`` metrics: the value against ``warn``/``critical`` in the metric's direction.
3. ``test`` metrics (``ks``, ``chi2``): Benjamini-Hochberg over every test of the window
   that passed the gates (in practice one per feature), each compared with its own
   ``fdr_q``; then the effect floor: the same feature's ``effect_metric`` in this window
   must reach ``effect_floor``. A test's finding carries value = the statistic and
   threshold = q; it is "warning" at most.

Every judged key gets a :class:`Finding` (``severity`` None when good), so the incident
tracker sees good windows too and can resolve.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple

from driftline.models.alerting.fdr import bh_adjusted
from driftline.models.alerting.rules import RulesConfig, Severity, Threshold

__all__ = ["Evaluation", "Finding", "Score", "Skipped", "Verdict", "evaluate_window", "verdict",
           "worst_per_feature"]

#: A stored score's verdict: its finding's severity, "ok", or not judged.
Verdict = Literal["ok", "warning", "critical", "not_evaluated"]


class Score(NamedTuple):
    """One metric of one feature for one closed window, as the drift step emits it."""

    model: str
    version: str
    feature: str
    metric: str
    value: float
    p_value: float | None
    n_reference: int
    n_window: int


class Skipped(NamedTuple):
    """A (feature, metric) of the window that was not judged, and why."""

    feature: str
    metric: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Finding:
    """The verdict on one (feature, metric) of one window; ``severity`` None is good.

    ``threshold`` is the bound crossed (the lowest one when good); for a test it is q,
    and ``value`` is the statistic. ``reason`` says the comparison in words.

    Examples
    --------
    >>> f = Finding("fraud-detector", "2", "amount", "psi", 0, 60_000, "critical",
    ...             0.41, 0.25, "psi 0.41 ≥ critical 0.25")
    >>> f.dedup_key, f.bad
    ('drift:fraud-detector:2:amount:psi', True)
    """

    model: str
    version: str
    feature: str
    metric: str
    window_start: int
    window_end: int
    severity: Severity | None
    value: float
    threshold: float
    reason: str
    category: str = "drift"
    p_value: float | None = None
    adjusted_p: float | None = None
    #: False: one incident per feature, whichever of its metrics is bad (see
    #: :func:`worst_per_feature`).
    per_metric: bool = True
    #: Open the incident on this one bad window (a river detector firing: detectors reset
    #: after a hit, so they rarely fire in consecutive windows).
    opens_at_once: bool = False

    @property
    def bad(self) -> bool:
        return self.severity is not None

    @property
    def dedup_key(self) -> str:
        """``category:model:version:feature[:metric]``, with ``%`` and ``:`` escaped."""
        parts = (self.category, self.model, self.version, self.feature,
                 *((self.metric,) if self.per_metric else ()))
        return ":".join(p.replace("%", "%25").replace(":", "%3A") for p in parts)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """All verdicts on one closed window of one model version.

    Examples
    --------
    >>> scores = [Score("m", "1", f, "psi", v, None, 5000, 800)
    ...           for f, v in [("age", 0.02), ("amount", 0.3), ("country", 0.12)]]
    >>> ev = evaluate_window(RulesConfig.default(), "m", "1", 0, 60_000, scores, 3)
    >>> [(f.feature, f.severity) for f in ev.findings]
    [('age', None), ('amount', 'critical'), ('country', 'warning')]
    >>> [f.reason for f in ev.bad]
    ['psi 0.3 ≥ critical 0.25', 'psi 0.12 ≥ warning 0.1']
    >>> evaluate_window(RulesConfig.default(), "m", "1", 0, 60_000, scores, 2).skipped[0]
    Skipped(feature='age', metric='psi', reason='2 of min_windows 3 windows closed')
    """

    model: str
    version: str
    window_start: int
    window_end: int
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def bad(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.bad)

    @property
    def good(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.bad)


def evaluate_window(
    config: RulesConfig,
    model: str,
    version: str,
    window_start: int,
    window_end: int,
    scores: Iterable[Score],
    windows_seen: int,
) -> Evaluation:
    """Judge one closed window's scores (all of one model version) against ``config``.

    Parameters
    ----------
    windows_seen
        Closed windows of this model version so far, this one included.

    Raises :class:`ValueError` for a score of another model version, or two scores
    for one (feature, metric).
    """
    by_key: dict[tuple[str, str], Score] = {}
    for score in scores:
        if (score.model, score.version) != (model, version):
            raise ValueError(f"score for {score.model} {score.version} in a window of "
                             f"{model} {version}")
        if (score.feature, score.metric) in by_key:
            raise ValueError(f"two scores for {score.feature!r} {score.metric!r}")
        by_key[score.feature, score.metric] = score
    skipped: list[Skipped] = []
    findings: list[Finding] = []
    tests: list[tuple[Score, Threshold]] = []
    for (feature, metric), score in sorted(by_key.items()):
        rule = config.rule(model, feature, metric)
        reason = _gate(rule, score, windows_seen)
        if reason is not None or rule is None:
            skipped.append(Skipped(feature, metric, reason or "no rule"))
        elif rule.kind == "test":
            tests.append((score, rule))
        else:
            level = rule.severity(score.value)
            bound = rule.bound(level)
            findings.append(_finding(score, rule, window_start, window_end, level, bound,
                                     _compare(rule, score.value, level, bound)))
    adjusted = bh_adjusted([s.p_value or 0.0 for s, _ in tests])  # gated: p is set
    for (score, rule), p_adj in zip(tests, adjusted, strict=True):
        effect = by_key.get((score.feature, rule.effect_metric or ""))
        if rule.effect_metric and (effect is None or not math.isfinite(effect.value)):
            skipped.append(Skipped(score.feature, score.metric,
                                   f"no {rule.effect_metric} score for the effect floor"))
        else:
            findings.append(_test_finding(score, rule, float(p_adj), effect,
                                          window_start, window_end))
    findings.sort(key=lambda f: (f.feature, f.metric))
    skipped.sort()
    return Evaluation(model, version, window_start, window_end, tuple(findings), tuple(skipped))


def _test_finding(score: Score, rule: Threshold, p_adj: float, effect: Score | None,
                  start: int, end: int) -> Finding:
    """Bad when significant after BH and the effect reaches its floor (no floor: None)."""
    significant = p_adj <= rule.fdr_q
    big = effect is None or effect.value >= rule.effect_floor
    reason = (f"{score.metric} {_fmt(score.value)}, BH-adjusted p {_fmt(p_adj)} "
              f"{'≤' if significant else '>'} q {_fmt(rule.fdr_q)}")
    if significant and effect is not None:
        reason += (f"{', ' if big else ' but '}{effect.metric} {_fmt(effect.value)} "
                   f"{'≥' if big else '<'} floor {_fmt(rule.effect_floor)}")
    severity: Severity | None = "warning" if significant and big else None
    return dataclasses.replace(_finding(score, rule, start, end, severity, rule.fdr_q, reason),
                               p_value=score.p_value, adjusted_p=p_adj)


def _gate(rule: Threshold | None, score: Score, windows_seen: int) -> str | None:
    """Why ``score`` may not be judged, or None when it may."""
    if rule is None:
        return f"no rule for metric {score.metric!r}"
    if not rule.enabled:
        return "rule disabled"
    if windows_seen < rule.min_windows:
        return f"{windows_seen} of min_windows {rule.min_windows} windows closed"
    if score.n_window < rule.min_count:
        return f"{score.n_window} events < min_count {rule.min_count}"
    if not math.isfinite(score.value):
        return f"value {score.value} is not finite"
    p = score.p_value
    if rule.kind == "test" and (p is None or not 0.0 <= p <= 1.0):
        return f"p-value {p} is not in [0, 1]"
    return None


def _finding(score: Score, rule: Threshold, start: int, end: int, severity: Severity | None,
             bound: float, reason: str) -> Finding:
    return Finding(score.model, score.version, score.feature, score.metric, start, end,
                   severity, float(score.value), bound, reason, rule.category)


def _compare(rule: Threshold, value: float, severity: Severity | None, bound: float) -> str:
    if severity is not None:
        sign = "≥" if rule.direction == "above" else "≤"
        return f"{rule.metric} {_fmt(value)} {sign} {severity} {_fmt(bound)}"
    sign = "<" if rule.direction == "above" else ">"
    level = "warning" if rule.warn is not None else "critical"
    return f"{rule.metric} {_fmt(value)} {sign} {level} {_fmt(bound)}"


def _fmt(x: float) -> str:
    return f"{x:.3g}"


_SEVERITY_RANK = {"critical": 0, "warning": 1, None: 2}
#: Among findings of equal severity, the one a person reads most easily is reported.
_METRIC_RANK = {"psi": 0, "js": 1, "wasserstein_std": 2, "unseen_share": 3, "ks": 4, "chi2": 5,
                # model quality, the service: the baseline comparisons read best
                "accuracy_drop": 0, "mae_ratio": 0, "latency_p95_ratio": 0, "error_rate": 0,
                "coverage": 1}


def verdict(finding: Finding | None) -> Verdict:
    """The verdict a score row stores for its finding (None: not judged)."""
    if finding is None:
        return "not_evaluated"
    return "ok" if finding.severity is None else finding.severity


def worst_per_feature(evaluation: Evaluation,
                      prefer: Mapping[str, str] | None = None) -> Evaluation:
    """One verdict per feature: its worst finding, keyed by the feature alone.

    One shifted feature makes PSI, JS, Wasserstein and KS bad together; users want one
    incident for it, not four. The finding kept is the most severe (then by metric name,
    then the most readable metric: PSI, JS, ...); the feature is good only when every
    metric is. ``prefer`` (feature -> metric): for a good feature, the finding of that
    metric if it has one (the metric its incident opened on, so a resolve names it).

    >>> scores = [Score("m", "1", "amount", metric, v, None, 5000, 800)
    ...           for metric, v in [("psi", 0.3), ("js", 0.12), ("wasserstein_std", 0.1)]]
    >>> ev = worst_per_feature(evaluate_window(RulesConfig.default(), "m", "1", 0, 60_000,
    ...                                        scores, 3))
    >>> [(f.dedup_key, f.metric, f.severity) for f in ev.findings]
    [('drift:m:1:amount', 'psi', 'critical')]
    """
    by_feature: dict[str, list[Finding]] = {}
    for finding in evaluation.findings:
        by_feature.setdefault(finding.feature, []).append(finding)
    prefer = prefer or {}

    def kept(feature: str, group: list[Finding]) -> Finding:
        worst = min(group, key=_badness)
        if worst.bad or feature not in prefer:
            return worst
        # A good window of a feature with an incident: say so in the incident's own metric.
        return next((f for f in group if f.metric == prefer[feature]), worst)

    worst = [dataclasses.replace(kept(feature, group), per_metric=False,
                                 opens_at_once=any(f.bad and f.opens_at_once for f in group))
             for feature, group in sorted(by_feature.items())]
    return dataclasses.replace(evaluation, findings=tuple(worst))


def _badness(finding: Finding) -> tuple[int, int, str]:
    return (_SEVERITY_RANK[finding.severity], _METRIC_RANK.get(finding.metric, 9),
            finding.metric)
