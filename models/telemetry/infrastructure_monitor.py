"""Judge each closed telemetry window by the ``category = "infrastructure"`` alert rules.

The same rules file and incident lifecycle as drift (:mod:`driftline.models.alerting.rules`,
:class:`~driftline.models.alerting.incidents.IncidentTracker`), with the host in the place of the
model, no version, and the GPU (``gpu0``, ``gpu1``, ...) or ``host`` in the place of the feature:

* per GPU: ``gpu_temperature_c`` and ``gpu_memory_percent`` (the window's max: a peak is
  what throttles or runs out of memory), ``gpu_xid_errors`` and ``gpu_ecc_uncorrected``
  (events in the window), ``gpu_throttled_share`` (samples held back by power or heat,
  over the samples that report throttling);
* per host: ``host_memory_percent`` (max) and ``host_cpu_percent`` (mean).

A rule's ``min_count`` counts samples that had the reading. One incident per GPU and
per host (:func:`~driftline.models.alerting.evaluation.worst_per_feature`), keyed
``infrastructure:<host>::<gpu0|host>``: a failing GPU runs hot, throttles and logs XIDs
together, and that is one incident. XID and uncorrected ECC errors are events, not
levels: one window with one opens the incident at once. Alerts name the models the GPU
(or host) served in the window, the people to tell.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import (
    Evaluation,
    Finding,
    Score,
    evaluate_window,
    worst_per_feature,
)
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.telemetry.aggregates import GpuWindowRow, HostWindowRow
from driftline.models.telemetry.windows import ClosedWindow

__all__ = ["CATEGORY", "HOST_FEATURE", "InfrastructureMonitor", "scores"]

CATEGORY = "infrastructure"
HOST_FEATURE = "host"
_AT_ONCE = frozenset({"gpu_xid_errors", "gpu_ecc_uncorrected"})


def _gpu_values(gpu: GpuWindowRow) -> dict[str, tuple[float | None, int]]:
    """Metric -> (value, samples it is computed from)."""
    temperature, memory = gpu.metrics["temperature_c"], gpu.metrics["memory_used_percent"]
    reported = gpu.reported("throttle_reasons")
    return {
        "gpu_temperature_c": (temperature.max, temperature.count),
        "gpu_memory_percent": (memory.max, memory.count),
        "gpu_xid_errors": (gpu.xid_errors, gpu.reported("xid_errors")),
        "gpu_ecc_uncorrected": (gpu.ecc_uncorrected, gpu.reported("ecc_volatile_uncorrected")),
        "gpu_throttled_share": (gpu.power_thermal_samples / reported if reported else None,
                                reported),
    }


def _host_values(host: HostWindowRow) -> dict[str, tuple[float | None, int]]:
    memory, cpu = host.metrics["memory_percent"], host.metrics["cpu_percent"]
    return {"host_memory_percent": (memory.max, memory.count),
            "host_cpu_percent": (cpu.mean, cpu.count)}


def scores(window: ClosedWindow) -> list[Score]:
    """The window's infrastructure scores: model = host, version "", feature gpuN or host."""
    host = window.host.host
    values = {(gpu.feature, metric): v for gpu in window.gpus
              for metric, v in _gpu_values(gpu).items()}
    values.update({(HOST_FEATURE, metric): v for metric, v in _host_values(window.host).items()})
    return [Score(host, "", feature, metric, float(value), None, 0, n)
            for (feature, metric), (value, n) in values.items() if value is not None and n]


class InfrastructureMonitor:
    """Rules and incidents for the hosts of one partition; checkpointed with it."""

    def __init__(self, rules: RulesConfig) -> None:
        self.rules = rules
        self.incidents = IncidentTracker.from_settings(rules.incidents)
        #: Dedup key -> the metric that was bad there last, while the tracker holds the key.
        self._bad_metric: dict[str, str] = {}

    def judge(self, window: ClosedWindow) -> list[Alert]:
        """Judge one closed window (in window order per host); the alerts it causes."""
        row = window.host
        evaluation = evaluate_window(self.rules, row.host, "", row.window_start,
                                     row.window_end, scores(window), window.windows_seen)
        # Forced, like performance does: a rules file's category must not move the keys.
        findings = tuple(dataclasses.replace(f, category=CATEGORY,
                                             opens_at_once=f.metric in _AT_ONCE)
                         for f in evaluation.findings)
        evaluation = dataclasses.replace(evaluation, findings=findings)
        judged = self._per_feature(evaluation)
        served = {gpu.feature: gpu.models for gpu in window.gpus}
        served[HOST_FEATURE] = row.models
        alerts = [_described(alert, judged, served) for alert in self.incidents.update(judged)]
        held = self.incidents.phases
        self._bad_metric = {k: m for k, m in self._bad_metric.items() if k in held}
        return alerts

    def _per_feature(self, evaluation: Evaluation) -> Evaluation:
        """One finding per GPU and host (:func:`worst_per_feature`); when all its metrics are
        good, the one of the metric that was bad there, so a resolve names what recovered."""
        judged = worst_per_feature(evaluation)
        findings = []
        for worst in judged.findings:
            if worst.bad:
                self._bad_metric[worst.dedup_key] = worst.metric
            else:
                metric = self._bad_metric.get(worst.dedup_key)
                worst = next((dataclasses.replace(f, per_metric=False)
                              for f in evaluation.findings
                              if f.feature == worst.feature and f.metric == metric), worst)
            findings.append(worst)
        return dataclasses.replace(judged, findings=tuple(findings))

    def to_state(self) -> dict[str, Any]:
        return {"incidents": self.incidents.to_dict(), "bad_metric": self._bad_metric}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.incidents = IncidentTracker.from_dict(state["incidents"], self.rules.incidents)
        self._bad_metric = dict(state["bad_metric"])


def _described(alert: Alert, judged: Evaluation, served: Mapping[str, tuple[str, ...]]) -> Alert:
    """The alert with a summary that names the host, the GPU and the models it serves."""
    finding = next((f for f in judged.findings if f.dedup_key == alert.dedup_key), None)
    if finding is None:  # cannot happen: the tracker only speaks of judged keys
        return alert
    return dataclasses.replace(alert, summary=summary(alert, finding,
                                                      served.get(alert.feature, ())))


def summary(alert: Alert, finding: Finding, models: tuple[str, ...]) -> str:
    """E.g. ``gpu-node-07 gpu0 (serves fraud-detector): gpu_temperature_c 92 ≥ critical 90
    since 2025-11-27 08:02 UTC``."""
    serves = f" (serves {', '.join(models)})" if models else ""
    head = f"{alert.model} {alert.feature}{serves}: "
    since = datetime.datetime.fromtimestamp(alert.first_seen / 1000, datetime.UTC)
    when = since.strftime("%Y-%m-%d %H:%M UTC")
    if alert.state == "resolved":
        return f"{head}back to normal ({finding.reason}); bad since {when}"
    if alert.state == "escalated":
        return f"{head}escalated to critical ({finding.reason}); bad since {when}"
    return f"{head}{finding.reason} since {when}"
