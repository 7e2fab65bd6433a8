"""Alert rules: per-metric thresholds from one config file, resolved per model and feature.

A file changes only what it names; everything else keeps the built-in defaults
(:data:`DEFAULTS`, spelled out with comments in ``driftline.toml`` at the repository
root). Its layout, in TOML (YAML with the same shape works where PyYAML is installed)::

    [defaults]                      # min_windows, min_count, fdr_q
    [incidents]                     # open_after, resolve_after, cooldown_windows
    [metrics.<metric>]              # kind, direction, warn, critical, effect_metric,
                                    # effect_floor, enabled, category, min_windows,
                                    # min_count, fdr_q
    [outputs.metrics.<metric>]      # the model's outputs: features named output.*
    [models."<model>"]              # min_windows, min_count, fdr_q
    [models."<model>".metrics.<metric>]
    [models."<model>".features.<feature>]          # also range = [low, high]
    [models."<model>".features.<feature>.metrics.<metric>]
    [retraining], [models."<model>".retraining]   # the retraining policy (see
                                    # driftline.models.alerting.retraining)
    [pipelines."<namespace>/<job glob>"]  # every_minutes, due_by, grace_minutes: a schedule
    [datasets."<namespace>/<name glob>"]  # max_age_minutes, models: a dataset's freshness

Each key resolves separately, the most specific scope winning: feature, then model,
then, for the model's outputs (``output.*`` features), ``outputs``, then defaults. A
metric has one of two kinds:

* ``threshold``: its value is bad at or beyond ``warn`` (severity "warning") or
  ``critical``, in its ``direction``: ``above`` (PSI: bigger is worse) or ``below``
  (accuracy: smaller is worse).
* ``test``: a p-value metric (``ks``, ``chi2``). It is bad when it is significant after
  Benjamini-Hochberg across the window's tests at ``fdr_q`` *and* the same feature's
  ``effect_metric`` in that window reaches ``effect_floor``: on a window of a million
  events every shift is significant, and only shifts big enough to matter may alert.
  A test is always severity "warning"; how big a shift is, the effect metrics say.

Applying the rules to one window's scores is
:func:`driftline.models.alerting.evaluation.evaluate_window`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from driftline.models.alerting._rule_checks import (
    INCIDENT_KEYS,
    METRIC_KEYS,
    SETTINGS,
    RulesError,
    check,
    quoted,
    table,
)
from driftline.models.alerting.retraining import RetrainingPolicy, check_policy, policy_for
from driftline.models.events.wire import OUTPUT

__all__ = ["DEFAULTS", "IncidentSettings", "RulesConfig", "RulesError", "Severity", "Threshold"]

Severity = Literal["warning", "critical"]
Direction = Literal["above", "below"]
Kind = Literal["threshold", "test"]

_DETECTOR = {"warn": 1.0}  # river detectors report 1.0 for a window in which they fired
_QUALITY = {"direction": "above", "category": "data_quality"}
DEFAULTS: Mapping[str, Any] = {
    "defaults": {"min_windows": 3, "min_count": 500, "fdr_q": 0.05},
    "incidents": {"open_after": 2, "resolve_after": 3, "cooldown_windows": 5},
    "metrics": {
        "psi": {"direction": "above", "warn": 0.1, "critical": 0.25},
        "js": {"direction": "above", "warn": 0.1, "critical": 0.2},
        # Computed and stored, but off for alerts: from percentile histograms it reads high
        # on heavy tails (stationary t(3): ~2x the exact distance; turned on, 21 false
        # alarms on t3/lognormal features in 16,640 stationary feature-windows of
        # benchmarks/detection.py); psi, js and ks cover the same shifts.
        "wasserstein_std": {"direction": "above", "warn": 0.2, "critical": 0.5,
                            "enabled": False},
        "wasserstein": {"enabled": False},  # in the feature's own units: set per feature
        "ks": {"kind": "test", "effect_metric": "psi", "effect_floor": 0.05},
        "chi2": {"kind": "test", "effect_metric": "psi", "effect_floor": 0.05},
        # Tail categories the reference names (its rest, up to 1,000) are seen, so a
        # stationary long tail reads 0; 0.1 leaves room for references past 1,000
        # categories, where the share is an upper bound.
        "unseen_share": {"direction": "above", "warn": 0.1, "critical": 0.25},
        # The largest change of a category's share: the effect floor of the model's
        # outputs (below); stored for every categorical feature, not judged on its own.
        "share_change": {"direction": "above", "enabled": False},
        "adwin": _DETECTOR, "kswin": _DETECTOR, "page_hinkley": _DETECTOR,
        # Model quality from delayed labels (models/quality/monitor.py), judged once per
        # window when its labels are due. Against the version's first judged windows:
        "accuracy_drop": {"direction": "above", "warn": 0.05, "critical": 0.1,
                          "category": "performance"},
        "mae_ratio": {"direction": "above", "warn": 1.25, "critical": 1.5,
                      "category": "performance"},
        # Absolute levels depend on the model: off until you set warn/critical and enable.
        **{name: {"direction": "below", "enabled": False, "category": "performance"}
           for name in ("accuracy", "f1_macro", "roc_auc", "coverage")},
        **{name: {"enabled": False, "category": "performance"}
           for name in ("log_loss", "ece", "mae", "rmse", "mape", "delay_p50_seconds",
                        "delay_p90_seconds", "delay_p99_seconds")},
        # Error-rate detectors on the labelled predictions, and ADWIN on their loss. DDM and
        # EDDM raise too many false alarms per window to alert by default (0.6 and 1.3 per
        # 10,000 values on a stationary 10 % error rate: several a day at 1,000 labels a
        # window); HDDM_A raised none in 200,000 values and still caught 10 % -> 20 %.
        "ddm": {**_DETECTOR, "enabled": False, "category": "performance"},
        "eddm": {**_DETECTOR, "enabled": False, "category": "performance"},
        "hddm_a": {**_DETECTOR, "category": "performance"},
        "adwin_loss": {**_DETECTOR, "category": "performance"},
        # The serving service per model version and window (models/telemetry/service_monitor.py).
        # p95 latency against the version's first windows': a regression; an SLO in ms is
        # yours to set.
        "latency_p95_ratio": {"direction": "above", "warn": 1.5, "critical": 2.0,
                              "category": "service"},
        **{name: {"enabled": False, "category": "service"}
           for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")},
        "error_rate": {"direction": "above", "warn": 0.02, "critical": 0.1,
                       "category": "service"},
        # Data quality per feature and window (models/data_quality/checks.py), against the
        # reference drift is judged against. Healthy traffic has no invalid values, keeps its
        # missing share within a few points of the reference's, and leaves its range about
        # 2 / (n + 1) of the time for a reference of n values.
        "invalid_share": {**_QUALITY, "warn": 0.001, "critical": 0.05},
        "missing_increase": {**_QUALITY, "warn": 0.05, "critical": 0.2},
        # A shift that drift already flags pushes a few % past the range (the demo's: 1-2 %);
        # a sentinel or a unit change pushes more.
        "out_of_range_increase": {**_QUALITY, "warn": 0.05, "critical": 0.2},
        "absent": {**_QUALITY, "critical": 1.0},
        "unexpected": {**_QUALITY, "warn": 1.0},
        # Timeliness per version and window: delays are yours to bound (a backfill or a
        # replay has event times from long ago); late arrivals are not normal.
        **{f"{what}_{level}_seconds": {**_QUALITY, "enabled": False}
           for what in ("event_delay", "processing_delay") for level in ("p50", "p95", "max")},
        "late_share": {**_QUALITY, "warn": 0.05, "critical": 0.2},
        # Volume against the mean of the version's previous 5 windows: a sudden drop to
        # half (or a fifth), a sudden tripling (or tenfold). Daily cycles move slower.
        "volume_drop": {**_QUALITY, "warn": 0.5, "critical": 0.8},
        "volume_spike": {**_QUALITY, "warn": 3.0, "critical": 10.0},
        # Events of a version's window whose request id another of its events already had
        # (estimated, ~1.6 % error: healthy traffic reads 0 to 0.04): a retry storm, or a
        # publisher called twice per request.
        "duplicate_share": {**_QUALITY, "warn": 0.05, "critical": 0.2},
        # Predictions from a version the model's registry does not know (only for models
        # that register their versions: `driftline registry version`); judged from the
        # version's first window, whatever its traffic.
        "unregistered_version": {**_QUALITY, "warn": 1.0, "min_count": 1, "min_windows": 1},
        # A model with no predictions for this many windows of its partition's event time
        # while the partition's other models go on (models/data_quality/silence.py).
        "silent_windows": {**_QUALITY, "critical": 5.0},
        # The share of a feature's values outside the range its rules declare (range =
        # [low, high] in its [models."m".features.f] table): a declared range is a promise.
        "out_of_declared_range": {**_QUALITY, "warn": 0.001, "critical": 0.05},
        # Business outcomes per version and window, per prediction (models/outcomes/monitor.py),
        # judged when the window is due. outcome_change: the window against the version's
        # first judged windows (z-test); challenger_test: a challenger against the champion
        # over the windows both served (always-valid, so judging every window keeps its
        # level). Bad when significant and the fall reaches its floor; for an outcome where
        # higher is worse, take outcome_rise / challenger_rise as the effect metric.
        # outcome_change at q 0.01: at 0.05, two windows in a row each 2 standard errors low
        # by chance opened 22 incidents per 10,000 stationary version-windows (0.8 at 0.01;
        # benchmarks/outcome_detection.py).
        "outcome_change": {"kind": "test", "effect_metric": "outcome_drop", "effect_floor": 0.1,
                           "fdr_q": 0.01, "category": "outcome"},
        "challenger_test": {"kind": "test", "effect_metric": "challenger_drop",
                            "effect_floor": 0.02, "category": "outcome"},
        **{name: {"direction": "above", "enabled": False, "category": "outcome"}
           for name in ("outcome_drop", "outcome_rise", "challenger_drop", "challenger_rise")},
        # Pipelines from OpenLineage run events (models/lineage/pipelines.py), per job (in the
        # place of the model: override with [models."<namespace>/<job>".metrics.<metric>]):
        # judged when a window with a run of the job closes, or every window for a job with a
        # schedule ([pipelines."<pattern>"] every_minutes); from the first window.
        **{name: {"direction": "above", **levels, "category": "pipeline", "min_count": 1,
                  "min_windows": 1}
           for name, levels in (("run_failed", {"critical": 1}),
                                ("run_duration_ratio", {"warn": 3.0}),
                                ("run_duration_minutes", {"enabled": False}),
                                ("missed_run_minutes", {"critical": 0.01}),
                                ("stale_dataset_minutes", {"critical": 0.01}))},
        # Service chains from OpenTelemetry spans (models/traces/hops.py), per hop and window:
        # the caller in the place of the model, the callee in the place of the feature
        # (override with [models."<caller>".features."<callee>".metrics.<metric>]). Against
        # the hop's first 5 windows of 20+ calls, and only when a one-sided binomial test at
        # 0.001 says chance cannot explain the window (calls slower than the usual p95;
        # errors): without it, 60-call windows of a heavy-tailed hop opened 42 incidents per
        # 10,000 steady hop-windows, with it none in 5,500 (benchmarks/chain_detection.py).
        **{name: {"direction": "above", **levels, "category": "chain", "min_count": 50,
                  "min_windows": 1}
           for name, levels in (("hop_latency_p95_ratio", {"warn": 1.5, "critical": 2.0}),
                                ("hop_error_increase", {"warn": 0.02, "critical": 0.1}),
                                ("hop_error_rate", {"enabled": False}),
                                ("hop_latency_p95_ms", {"enabled": False}))},
        # GPUs and hosts per telemetry window (models/telemetry/infrastructure_monitor.py): judged
        # on the samples of one window (~12 at the agent's 5 s), from the first window on.
        **{name: {"direction": "above", **levels, "category": "infrastructure",
                  "min_count": 1, "min_windows": 1}
           for name, levels in (("gpu_temperature_c", {"warn": 83, "critical": 90}),
                                ("gpu_memory_percent", {"warn": 90, "critical": 97}),
                                ("gpu_xid_errors", {"critical": 1}),
                                ("gpu_ecc_uncorrected", {"critical": 1}),
                                ("gpu_throttled_share", {"warn": 0.5}),
                                ("host_memory_percent", {"warn": 90, "critical": 97}),
                                ("host_cpu_percent", {"warn": 90, "critical": 98,
                                                      "enabled": False}))},
    },
    # The model's outputs (features output.prediction, output.score, ...), over the
    # metrics above and under any model's or feature's own rules. A class share moving
    # from 0.68 to 0.755 is a PSI of 0.028, under chi2's usual floor: outputs take the
    # share's own change as the effect, 5 points by default.
    "outputs": {"metrics": {"chi2": {"effect_metric": "share_change", "effect_floor": 0.05}}},
}


@dataclasses.dataclass(frozen=True)
class IncidentSettings:
    """How findings become incidents (see
    :class:`driftline.models.alerting.incidents.IncidentTracker`)."""

    open_after: int = 2
    resolve_after: int = 3
    cooldown_windows: int = 5


@dataclasses.dataclass(frozen=True)
class Threshold:
    """The rule for one metric of one feature of one model, overrides applied.

    Attributes
    ----------
    kind, direction, warn, critical
        ``threshold``: bad at or beyond ``warn``/``critical`` in ``direction``; a level
        set to None is off. ``test``: judged by p-value and effect floor instead.
    effect_metric, effect_floor, fdr_q
        For a ``test``: its BH-adjusted p-value must be ``<= fdr_q`` and the same
        feature's ``effect_metric`` ``>= effect_floor`` (no floor when None).
    min_count, min_windows
        Events the window needs, and closed windows the version needs, to be judged.
    enabled, category
        A disabled rule judges nothing; ``category`` starts the dedup key.

    Examples
    --------
    >>> psi = Threshold("psi", warn=0.1, critical=0.25)
    >>> psi.severity(0.05), psi.severity(0.1), psi.severity(0.41)
    (None, 'warning', 'critical')
    >>> accuracy = Threshold("accuracy", direction="below", warn=0.9, critical=0.8)
    >>> accuracy.severity(0.85), accuracy.bound("critical")
    ('warning', 0.8)
    """

    metric: str
    kind: Kind = "threshold"
    direction: Direction = "above"
    warn: float | None = None
    critical: float | None = None
    effect_metric: str | None = None
    effect_floor: float = 0.0
    fdr_q: float = 0.05
    min_count: int = 500
    min_windows: int = 3
    enabled: bool = True
    category: str = "drift"

    def severity(self, value: float) -> Severity | None:
        """How bad ``value`` is for a ``threshold`` metric: None when it is fine."""
        if self.critical is not None and self._reaches(value, self.critical):
            return "critical"
        if self.warn is not None and self._reaches(value, self.warn):
            return "warning"
        return None

    def bound(self, severity: Severity | None) -> float:
        """The bound reported with a finding: the one crossed, or the lowest for None."""
        if self.kind == "test":
            return self.fdr_q
        level = self.critical if severity == "critical" or self.warn is None else self.warn
        if level is None:
            raise ValueError(f"the {self.metric} rule has neither warn nor critical")
        return level

    def _reaches(self, value: float, bound: float) -> bool:
        return value >= bound if self.direction == "above" else value <= bound


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One scope of a rules file: scalar settings and per-metric rule fields."""

    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def over(self, base: _Layer) -> _Layer:
        metrics = {m: {**base.metrics.get(m, {}), **self.metrics.get(m, {})}
                   for m in {**base.metrics, **self.metrics}}
        return _Layer({**base.settings, **self.settings}, metrics)


#: Resolved rules kept at most (a few per feature of every model a worker holds).
_RESOLVED_LIMIT = 200_000


@dataclasses.dataclass(frozen=True)
class RulesConfig:
    """All alert rules, parsed and checked once at start-up.

    Examples
    --------
    >>> rules = RulesConfig.from_toml('''
    ... [models."fraud-detector".metrics.psi]
    ... critical = 0.3
    ... [models."fraud-detector".features.amount]
    ... min_count = 50
    ... ''')
    >>> t = rules.thresholds("fraud-detector", "amount", "psi")
    >>> t.warn, t.critical, t.min_count
    (0.1, 0.3, 50)
    >>> rules.thresholds("churn", "amount", "psi").critical
    0.25
    >>> RulesConfig.from_toml("[metrics.psi]\\nwarm = 0.2")
    Traceback (most recent call last):
    ...
    driftline.models.alerting.rules.RulesError: <string>: metrics.psi.warm: unknown key; did you mean 'warn'?
    """  # noqa: E501 (a doctest's exception line is one line)

    defaults: _Layer
    outputs: _Layer
    models: Mapping[str, _Layer]
    features: Mapping[tuple[str, str], _Layer]
    incidents: IncidentSettings
    #: Declared valid ranges per (model, feature): values outside are counted as
    #: out_of_declared_range (-inf / inf for an open end).
    ranges: Mapping[tuple[str, str], tuple[float, float]] = dataclasses.field(
        default_factory=dict)
    #: Pipeline schedules by job pattern: ``[pipelines."<namespace>/<job glob>"]``.
    pipelines: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: Dataset freshness by dataset pattern: ``[datasets."<namespace>/<name glob>"]``.
    datasets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: The retraining policy's keys: the file's ``[retraining]`` (None) and per model.
    retraining: Mapping[str | None, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict)
    #: Rules already resolved: every closing window asks for each feature's metrics.
    _resolved: dict[tuple[str, str | None, str], Threshold | None] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def default(cls) -> Self:
        """The built-in rules, :data:`DEFAULTS`."""
        return cls.from_mapping({})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> Self:
        """Rules from an already-parsed document, applied over :data:`DEFAULTS`."""
        try:
            return cls._parse(data, cls._parse(DEFAULTS, None))
        except RulesError as e:
            raise RulesError(f"{source}: {e}") from None

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Self:
        """Rules from TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RulesError(f"{source}: not valid TOML: {e}") from None
        return cls.from_mapping(data, source)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Rules from a ``.toml`` file, or ``.yaml``/``.yml`` where PyYAML is importable."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".yaml", ".yml"):
            raise RulesError(f"{path}: unknown rules format; name the file .toml (or .yaml)")
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RulesError(f"{path}: cannot read the rules file: {e}") from None
        if suffix == ".toml":
            return cls.from_toml(text, str(path))
        try:
            yaml = importlib.import_module("yaml")
        except ImportError:
            raise RulesError(f"{path}: YAML rules need PyYAML (pip install pyyaml); "
                             "or write the rules as TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RulesError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        return cls.from_mapping({} if data is None else data, str(path))

    def thresholds(self, model: str, feature: str, metric: str) -> Threshold:
        """The rule for ``metric`` of ``feature`` of ``model``: feature > model > default.

        Raises :class:`KeyError` when no scope has a rule for ``metric``.
        """
        rule = self.rule(model, feature, metric)
        if rule is None:
            raise KeyError(f"no alert rule for metric {metric!r}; add a [metrics.{metric}] table")
        return rule

    def rule(self, model: str, feature: str | None, metric: str) -> Threshold | None:
        """Like :meth:`thresholds`, but None for a metric without a rule."""
        key = (model, feature, metric)
        if key in self._resolved:
            return self._resolved[key]
        if len(self._resolved) >= _RESOLVED_LIMIT:
            self._resolved.clear()
        found = self._resolved[key] = self._resolve(model, feature, metric)
        return found

    def _resolve(self, model: str, feature: str | None, metric: str) -> Threshold | None:
        fields: dict[str, Any] = {}
        found = False
        for layer in self._chain(model, feature):
            fields.update(layer.settings)
            if metric in layer.metrics:
                found = True
                fields.update(layer.metrics[metric])
        return Threshold(metric, **fields) if found else None

    def _chain(self, model: str, feature: str | None) -> list[_Layer]:
        output = self.outputs if feature and feature.startswith(OUTPUT) else None
        layers = [self.defaults, output, self.models.get(model),
                  self.features.get((model, feature or ""))]
        return [layer for layer in layers if layer is not None]

    @classmethod
    def _parse(cls, data: Mapping[str, Any], base: RulesConfig | None) -> Self:
        doc = table("", data, ("defaults", "incidents", "metrics", "outputs", "models",
                               "retraining", "pipelines", "datasets"))
        pipelines = {pattern: _schedule(f"pipelines.{quoted(pattern)}", raw)
                     for pattern, raw in table("pipelines", doc.get("pipelines", {})).items()}
        datasets = {pattern: _freshness(f"datasets.{quoted(pattern)}", raw)
                    for pattern, raw in table("datasets", doc.get("datasets", {})).items()}
        retraining: dict[str | None, Mapping[str, Any]] = {}
        if "retraining" in doc:
            retraining[None] = _policy("retraining", doc["retraining"])
        defaults = _layer("defaults", table("defaults", doc.get("defaults", {}), SETTINGS),
                          "metrics", doc.get("metrics", {}))
        oscope = table("outputs", doc.get("outputs", {}), (*SETTINGS, "metrics"))
        outputs = _layer("outputs", oscope, "outputs.metrics", oscope.get("metrics", {}))
        raw_incidents = table("incidents", doc.get("incidents", {}), INCIDENT_KEYS)
        incidents = {k: check(f"incidents.{k}", k, v) for k, v in raw_incidents.items()}
        models: dict[str, _Layer] = {}
        features: dict[tuple[str, str], _Layer] = {}
        ranges: dict[tuple[str, str], tuple[float, float]] = {}
        for model, raw in table("models", doc.get("models", {})).items():
            where = f"models.{quoted(model)}"
            scope = table(where, raw, (*SETTINGS, "metrics", "features", "retraining"))
            if "retraining" in scope:
                retraining[model] = _policy(f"{where}.retraining", scope["retraining"])
            models[model] = _layer(where, scope, f"{where}.metrics", scope.get("metrics", {}))
            for feature, fraw in table(f"{where}.features", scope.get("features", {})).items():
                fwhere = f"{where}.features.{quoted(feature)}"
                fscope = table(fwhere, fraw, (*SETTINGS, "metrics", "range"))
                features[model, feature] = _layer(fwhere, fscope, f"{fwhere}.metrics",
                                                  fscope.get("metrics", {}))
                if "range" in fscope:
                    ranges[model, feature] = _range(f"{fwhere}.range", fscope["range"])
        settings = IncidentSettings(**incidents)
        if base is not None:
            defaults = defaults.over(base.defaults)
            outputs = outputs.over(base.outputs)
            settings = dataclasses.replace(base.incidents, **incidents)
        if base is not None:
            retraining = {**base.retraining, **retraining}
            pipelines = {**base.pipelines, **pipelines}
            datasets = {**base.datasets, **datasets}
        rules = cls(defaults, outputs, models, features, settings, ranges, pipelines, datasets,
                    retraining)
        rules._check_all()
        return rules

    def retraining_policy(self, model: str) -> RetrainingPolicy:
        """When incidents of ``model`` ask for retraining (off unless the file says so)."""
        return policy_for(self.retraining, model)

    def declared_range(self, model: str, feature: str) -> tuple[float, float] | None:
        """The valid range the rules declare for a model's feature, if any."""
        return self.ranges.get((model, feature))

    def _check_all(self) -> None:
        scopes: list[tuple[str, str, str | None]] = [("metrics", "", None),
                                                     ("outputs.metrics", "", OUTPUT)]
        scopes += [(f"models.{quoted(m)}.metrics", m, None) for m in self.models]
        scopes += [(f"models.{quoted(m)}.features.{quoted(f)}.metrics", m, f)
                   for m, f in self.features]
        for where, model, feature in scopes:
            names = {n for layer in self._chain(model, feature) for n in layer.metrics}
            for name in sorted(names):
                rule = self.rule(model, feature, name)
                if rule is not None:
                    _check_rule(f"{where}.{quoted(name)}", rule)


def _schedule(where: str, raw: Any) -> Mapping[str, Any]:
    """``every_minutes`` (a START expected at least this often), ``due_by`` ("HH:MM" UTC: a
    run completed each day by then) and ``grace_minutes``."""
    fields = table(where, raw, ("every_minutes", "due_by", "grace_minutes"))
    for key, value in fields.items():
        if key == "due_by":
            hours, _, minutes = str(value).partition(":")
            if not (isinstance(value, str) and hours.isdigit() and minutes.isdigit()
                    and int(hours) < 24 and int(minutes) < 60):
                raise RulesError(f'{where}.due_by must be a UTC time of day, e.g. "06:00"')
        elif not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0 \
                or (key == "every_minutes" and not value > 0):
            raise RulesError(f"{where}.{key} must be a positive number of minutes")
    return fields


def _freshness(where: str, raw: Any) -> Mapping[str, Any]:
    """``max_age_minutes`` (required) and ``models``: the models that read the dataset."""
    fields = table(where, raw, ("max_age_minutes", "models"))
    age = fields.get("max_age_minutes")
    if not isinstance(age, int | float) or isinstance(age, bool) or not age > 0:
        raise RulesError(f"{where}.max_age_minutes must be a positive number of minutes")
    models = fields.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise RulesError(f"{where}.models must be a list of model names")
    return fields


def _policy(where: str, raw: Any) -> Mapping[str, Any]:
    try:
        return check_policy(where, raw)
    except ValueError as e:
        raise RulesError(str(e)) from None


def _range(where: str, value: Any) -> tuple[float, float]:
    """``[low, high]``, either end may be null (open); low < high."""
    if (not isinstance(value, list) or len(value) != 2
            or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)
                                     and math.isfinite(v)) for v in value)):
        raise RulesError(f"{where}: expected [low, high], numbers or null for an open end, "
                         f"e.g. range = [0, 10000]")
    low = -math.inf if value[0] is None else float(value[0])
    high = math.inf if value[1] is None else float(value[1])
    if not low < high:
        raise RulesError(f"{where}: low {low:g} must be below high {high:g}")
    return low, high


def _layer(where: str, settings: dict[str, Any], metrics_at: str, metrics: Any) -> _Layer:
    scalars = {k: check(f"{where}.{k}", k, v) for k, v in settings.items() if k in SETTINGS}
    rules = {}
    for name, raw in table(metrics_at, metrics).items():
        at = f"{metrics_at}.{quoted(name)}"
        fields = table(at, raw, METRIC_KEYS)
        rules[name] = {k: check(f"{at}.{k}", k, v) for k, v in fields.items()}
        if ("warn" in fields or "critical" in fields) and "enabled" not in fields:
            rules[name]["enabled"] = True  # setting a level switches a metric on
    return _Layer(scalars, rules)


def _check_rule(where: str, rule: Threshold) -> None:
    """Checks that need the resolved rule: its keys must fit its kind."""
    if rule.kind == "test":
        for key in ("warn", "critical"):
            if getattr(rule, key) is not None:
                raise RulesError(f"{where}.{key}: a test metric has no {key} level; "
                                 "tune fdr_q and effect_floor instead")
        return
    if rule.effect_metric is not None:
        raise RulesError(f"{where}.effect_metric: only a metric with kind = \"test\" has an "
                         "effect floor; remove it")
    if rule.warn is None and rule.critical is None:
        if rule.enabled:
            raise RulesError(f"{where}: set warn and/or critical, or enabled = false")
        return
    if (rule.warn is not None and rule.critical is not None
            and rule.severity(rule.warn) == "critical" and rule.warn != rule.critical):
        raise RulesError(f"{where}: critical {rule.critical} must be at or {rule.direction} "
                         f"warn {rule.warn} for direction {rule.direction!r}")
