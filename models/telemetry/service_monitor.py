"""The serving service's own health per model version and window: requests, throughput,
latency quantiles and errors by status, judged by the ``category = "service"`` rules.

The worker watches each prediction's ``latency_ms`` and ``status`` as the reserved features
``service.latency_ms`` and ``service.status`` (see :mod:`driftline.models.events.wire`), so they get
the same event-time windows, lateness and exactness as any feature, and their quantiles come from
the same mergeable sketch (1 % relative error). When a version's window closes,
:class:`ServiceMonitor` turns those two feature rows into one :class:`ServiceWindowRow` and judges
it:

- ``latency_p50_ms`` / ``latency_p95_ms`` / ``latency_p99_ms`` against an SLO you set
  (off by default);
- ``latency_p95_ratio``: this window's p95 over the mean p95 of the version's first
  ``baseline_windows`` windows (a regression after a deploy or on a busy GPU);
- ``error_rate``: the share of requests whose status is not a success ("ok", "success",
  or an HTTP 2xx code); statuses outside the window's tracked categories count as errors.

Incidents: ``service:<model>:<version>:latency`` and ``...:errors``, with the lifecycle of
every other incident.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import Score, evaluate_window, worst_per_feature
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import LATENCY_FEATURE, STATUS_FEATURE
from driftline.models.windows.feature_windows import QUANTILE_LEVELS, FeatureWindowRow

__all__ = ["ServiceConfig", "ServiceMonitor", "ServiceWindowRow", "is_success"]

_SUCCESS = re.compile(r"(?i)ok|success|2\d\d")
_P50, _P95, _P99 = (QUANTILE_LEVELS.index(q) for q in (0.5, 0.95, 0.99))


def is_success(status: str) -> bool:
    """Whether a status is a success.

    >>> [is_success(s) for s in ("ok", "OK", "204", "timeout", "500", "oom")]
    [True, True, True, False, False, False]
    """
    return _SUCCESS.fullmatch(status) is not None


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    window_ms: int = 60_000
    baseline_windows: int = 5


@dataclasses.dataclass(frozen=True)
class ServiceWindowRow:
    """One closed window of one model version's service: a ``service_windows`` row."""

    model: str
    version: str
    window_start: int
    window_end: int
    requests: int
    throughput_per_s: float
    latency_count: int
    latency_mean_ms: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    status_counts: dict[str, int]
    errors: int
    error_rate: float | None


def service_row(window: Sequence[FeatureWindowRow], window_ms: int) -> ServiceWindowRow | None:
    """The service row of one closed window (all rows of one version), None without any
    latency or status."""
    by_feature = {row.feature: row for row in window}
    latency, status = by_feature.get(LATENCY_FEATURE), by_feature.get(STATUS_FEATURE)
    if latency is None and status is None:
        return None
    first = window[0]
    requests = max(row.count for row in window)
    present = 0 if latency is None else latency.count - latency.missing_count

    def stat(value: float | None) -> float | None:
        return None if value is None or not present or math.isnan(value) else float(value)

    quantiles = latency.quantiles if latency is not None and latency.quantiles else ()
    counts: dict[str, int] = {}
    errors = 0
    with_status = 0
    if status is not None:
        counts = {c: n for c, n in (status.tracked_counts or dict(zip(
            status.categories, status.category_counts, strict=True))).items() if n}
        named = sum(counts.values())
        with_status = status.count - status.missing_count
        errors = sum(n for c, n in counts.items() if not is_success(c)) + max(
            with_status - named, 0)
    return ServiceWindowRow(
        first.model, first.version, first.window_start, first.window_end, requests,
        requests / (window_ms / 1000), present,
        stat(latency.mean if latency is not None else None),
        stat(quantiles[_P50] if quantiles else None),
        stat(quantiles[_P95] if quantiles else None),
        stat(quantiles[_P99] if quantiles else None),
        stat(latency.max if latency is not None else None),
        counts, errors, errors / with_status if with_status else None)


@dataclasses.dataclass
class _Version:
    windows: int = 0
    baseline_windows: int = 0
    baseline_p95_sum: float = 0.0


class ServiceMonitor:
    """Service rows and service alerts for the model versions of one partition."""

    def __init__(self, config: ServiceConfig, rules: RulesConfig) -> None:
        self.config = config
        self.rules = rules
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        self._versions: dict[tuple[str, str], _Version] = {}

    def observe(self, rows: Sequence[FeatureWindowRow]
                ) -> tuple[list[ServiceWindowRow], list[Alert]]:
        """Rows and alerts of the closed windows in ``rows`` (in the order they closed)."""
        windows: dict[tuple[str, str, int], list[FeatureWindowRow]] = {}
        for row in rows:
            windows.setdefault((row.model, row.version, row.window_start), []).append(row)
        out: list[ServiceWindowRow] = []
        alerts: list[Alert] = []
        for window in windows.values():
            service = service_row(window, self.config.window_ms)
            if service is not None:
                out.append(service)
                alerts += self._judge(service)
        return out, alerts

    def _judge(self, row: ServiceWindowRow) -> list[Alert]:
        state = self._versions.setdefault((row.model, row.version), _Version())
        state.windows += 1
        values: dict[tuple[str, str], tuple[float | None, int]] = {
            ("latency", "latency_p50_ms"): (row.latency_p50_ms, row.latency_count),
            ("latency", "latency_p95_ms"): (row.latency_p95_ms, row.latency_count),
            ("latency", "latency_p99_ms"): (row.latency_p99_ms, row.latency_count),
            ("errors", "error_rate"): (row.error_rate, row.requests),
        }
        baseline = self._baseline(row, state)
        if baseline and row.latency_p95_ms is not None:
            values[("latency", "latency_p95_ratio")] = (row.latency_p95_ms / baseline,
                                                        row.latency_count)
        scores = [Score(row.model, row.version, feature, metric, value, None, 0, n)
                  for (feature, metric), (value, n) in sorted(values.items())
                  if value is not None and math.isfinite(value)]
        evaluation = evaluate_window(self.rules, row.model, row.version, row.window_start,
                                     row.window_end, scores, state.windows)
        findings = tuple(dataclasses.replace(f, category="service")
                         for f in evaluation.findings)
        return self.incidents.update(worst_per_feature(
            dataclasses.replace(evaluation, findings=findings)))

    def _baseline(self, row: ServiceWindowRow, state: _Version) -> float | None:
        """Mean p95 latency of the version's first windows with enough latencies."""
        rule = self.rules.rule(row.model, "latency", "latency_p95_ratio")
        min_count = rule.min_count if rule is not None else 0
        if state.baseline_windows < self.config.baseline_windows:
            if row.latency_p95_ms is not None and row.latency_count >= min_count:
                state.baseline_windows += 1
                state.baseline_p95_sum += row.latency_p95_ms
            return None
        return state.baseline_p95_sum / state.baseline_windows

    def to_state(self) -> dict[str, Any]:
        return {"incidents": self.incidents.to_dict(),
                "versions": [[m, v, dataclasses.asdict(s)]
                             for (m, v), s in sorted(self._versions.items())]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self._versions = {(m, v): _Version(**fields) for m, v, fields in state["versions"]}
