"""One frozen settings object, read once from ``DRIFTLINE_*`` environment variables.

Nothing else in driftline reads ``os.environ``: the CLI builds :class:`Settings` once with
:meth:`Settings.from_env` and passes it down.

>>> s = Settings.from_env({"DRIFTLINE_WINDOW_SECONDS": "30", "DRIFTLINE_PARTITIONS": "2"})
>>> s.window_seconds, s.partitions, s.window_ms
(30, 2, 30000)
>>> Settings.from_env(s.to_env()) == s
True
>>> Settings.from_env({"DRIFTLINE_WINDOW_SECONDS": "soon"})
Traceback (most recent call last):
...
ValueError: DRIFTLINE_WINDOW_SECONDS='soon' is not an integer: set it to a whole number of seconds
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_type_hints

import orjson

from driftline.streams.model_overrides import ModelOverrides, dump_models, parse_models

BrokerFlavor = Literal["kafka", "tansu"]

_PREFIX = "DRIFTLINE_"
_SECRET_FIELDS = frozenset({"kafka_sasl_password", "clickhouse_password"})
_NO_OVERRIDES = ModelOverrides()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a driftline process can be told, with the defaults of the embedded run.

    Each field ``name`` is read from ``DRIFTLINE_NAME`` (upper case).
    """

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: "tansu" switches on client-side fixes for the embedded broker's known gaps.
    broker_flavor: BrokerFlavor = "kafka"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = dataclasses.field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None

    # Topics. Every source topic is keyed by model, so a model's events meet on one partition.
    predictions_topic: str = "driftline.predictions"
    labels_topic: str = "driftline.labels"
    dead_letter_topic: str = "driftline.dead-letters"
    #: Compacted: the live reference profile per model version, read by every worker.
    references_topic: str = "driftline.references"
    #: OpenLineage run events of pipelines (what its Kafka transport writes); read only.
    lineage_topic: str = "openlineage.events"
    #: Those events re-keyed by job, and the worker's watermarks: driftline's own.
    pipelines_topic: str = "driftline.pipelines"
    #: Spans the OpenTelemetry Collector's Kafka exporter writes (its default topic); read only.
    traces_topic: str = "otlp_spans"
    #: How that exporter encodes them: its default ``otlp_proto``, or ``otlp_json``.
    traces_encoding: Literal["otlp_proto", "otlp_json"] = "otlp_proto"
    #: Those spans summed per service and window, keyed by service, and the worker's
    #: watermarks: driftline's own.
    service_chains_topic: str = "driftline.service-chains"
    #: Compacted: each service's latest judged hops, read by every worker to explain a
    #: model's latency alert.
    service_hops_topic: str = "driftline.service-hops"
    #: Compacted: model versions and their deployments (``driftline registry``).
    registry_topic: str = "driftline.model-registry"
    #: Alert JSON, keyed by model, for any consumer (pager bridge, retraining trigger).
    alerts_topic: str = "driftline.alerts"
    partitions: int = 4
    replication_factor: int = 1

    # ClickHouse
    clickhouse_url: str = "http://127.0.0.1:8123"
    clickhouse_user: str = "default"
    clickhouse_password: str = dataclasses.field(default="", repr=False)
    clickhouse_database: str = "driftline"
    #: CA bundle (PEM) that verifies an https:// ClickHouse's certificate; unset: the system's.
    clickhouse_ca_file: str | None = None

    # Worker
    app_id: str = "driftline"
    #: The worker's /metrics for Prometheus on this port (0: off), and the agent's on its
    #: own; both on metrics_host (0.0.0.0 to be scraped from other hosts).
    metrics_port: int = 0
    agent_metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    state_dir: str = ".driftline/state"
    window_seconds: int = 60
    #: A window closes when (the model's largest event time) - lateness passes its end.
    allowed_lateness_seconds: int = 10
    #: A model that has sent nothing for this long (wall clock) gets its windows closed.
    idle_close_seconds: float = 30.0
    #: At most this often per partition: rows written, state checkpointed, offsets acked.
    checkpoint_seconds: float = 1.0
    #: At most this many messages are processed together.
    batch_max_messages: int = 2000
    #: Messages a worker reads ahead of its processing, per agent: with large envelopes
    #: this, not the state, is most of its memory (about 3 MB each for 400 features).
    stream_buffer_messages: int = 4096
    #: How often the worker hands its C heap's free pages back to the system (0: never).
    release_memory_seconds: float = 10.0
    max_message_bytes: int = 8 * 1024 * 1024

    # Feature distributions
    histogram_bins: int = 10
    #: Percentile bins on which KS and Wasserstein are computed (with a stated error bound).
    fine_histogram_bins: int = 100
    #: Edges are frozen from the first values seen of a feature, until reference profiles exist.
    edge_sample_size: int = 1000
    #: JSON object: feature name -> list of bin edges, overriding edges learnt from data.
    bin_edges: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    top_k_categories: int = 20
    max_tracked_categories: int = 1000
    quantile_relative_accuracy: float = 0.01

    # Delayed labels
    #: Store predictions and join them with labels; off for models that never get labels
    #: (storing each prediction costs about a microsecond of worker time).
    label_join: bool = True
    #: How long (event time) a prediction waits for its label; later labels are expired.
    label_ttl_seconds: int = 7 * 24 * 3600
    #: How long (the model's event time) a label that came before its prediction waits.
    early_label_ttl_seconds: int = 24 * 3600
    #: A window's quality is judged (alerts) once the model's event time is this far past
    #: its end: most of its labels should have come by then.
    judge_after_seconds: int = 3600

    # Business outcomes (reported on the labels topic, joined like labels)
    #: How long (event time) a prediction waits for its outcomes (a chargeback: 90 days).
    outcome_ttl_seconds: int = 7 * 24 * 3600
    #: A window's outcomes are judged (baseline, champion vs challenger) once the model's
    #: event time is this far past its end.
    outcome_judge_after_seconds: int = 3600
    #: Always-valid confidence of the champion/challenger comparison (1 - alpha).
    outcome_confidence: float = 0.95
    #: JSON object of per-model overrides of the TTLs and judge times above, and the
    #: model's task, positive class and champion version (see streams/model_overrides.py).
    models: Mapping[str, ModelOverrides] = dataclasses.field(default_factory=dict)

    # Drift
    #: How long a starting worker waits to read the existing reference profiles.
    reference_wait_seconds: float = 10.0
    #: Alert rules (TOML, or YAML with PyYAML installed); built-in defaults when unset.
    rules_file: str | None = None
    #: Without a training reference, a version's first N closed windows become its reference.
    baseline_windows: int = 5
    #: "fixed": the first N windows, once; "rolling": always the N windows before this one.
    baseline_mode: Literal["fixed", "rolling"] = "fixed"
    #: river detectors to run, comma-separated from adwin, kswin, page_hinkley ("" for none).
    detectors: str = "adwin,page_hinkley"
    #: Their streams, comma-separated: "score" (every event's score), "feature_means"
    #: (each window's mean of each numeric feature).
    detector_streams: str = "score,feature_means"

    # Webhooks
    #: JSON array of webhook targets for alerts (see models/alerting/webhooks.py); empty: none.
    webhooks: str = ""
    #: Tries per alert and target before it is given up (logged and counted).
    webhook_attempts: int = 8
    #: Retraining requests (the rules file's [retraining] policy), JSON keyed by model.
    retraining_topic: str = "driftline.retraining"
    #: JSON array of webhook targets for retraining requests (same shape; format "airflow"
    #: posts an Airflow DAG run).
    retraining_webhooks: str = ""

    # Telemetry agent (`driftline agent`, one per inference host; streams/agent/)
    #: Host and GPU telemetry samples, JSON keyed by host name.
    telemetry_topic: str = "driftline.telemetry"
    agent_interval_seconds: float = 5.0
    #: Samples held while Kafka is unreachable (720 x 5 s: an hour); then the oldest go.
    agent_buffer: int = 720
    #: Serving processes to report: comma-separated PIDs, and/or a regular expression
    #: searched in each process's name and command line.
    agent_pids: str = ""
    agent_process_pattern: str | None = None
    #: Models this host serves, comma-separated; empty: found in the serving processes
    #: (DRIFTLINE_MODEL in their environment, else agent_model_arg_pattern).
    agent_models: str = ""
    #: Finds a model name in a serving process's command line (group 1); empty: never.
    agent_model_arg_pattern: str = r"--(?:served-)?model(?:-name|-id)?[= ](\S+)"
    #: Host name in samples and message keys; the machine's host name when unset.
    agent_host: str | None = None

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def allowed_lateness_ms(self) -> int:
        return self.allowed_lateness_seconds * 1000

    def for_model(self, model: str, name: str) -> Any:
        """Setting ``name`` for ``model``: its override in ``models``, else the default."""
        value = getattr(self.models.get(model, _NO_OVERRIDES), name)
        return getattr(self, name, None) if value is None else value

    @property
    def label_retention_days(self) -> int:
        """Days predictions and early labels are kept: a day past the longest TTL."""
        longest = max([self.label_ttl_seconds, self.early_label_ttl_seconds,
                       self.outcome_ttl_seconds,
                       *(o.label_ttl_seconds or 0 for o in self.models.values()),
                       *(o.early_label_ttl_seconds or 0 for o in self.models.values()),
                       *(o.outcome_ttl_seconds or 0 for o in self.models.values())])
        return -(-longest // 86_400) + 1

    @property
    def detector_names(self) -> tuple[str, ...]:
        return tuple(_items(self.detectors))

    @property
    def detector_stream_names(self) -> tuple[str, ...]:
        return tuple(_items(self.detector_streams))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``DRIFTLINE_*`` variables (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(field.name, hints[field.name], raw)
        return cls(**values)._validated()

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)._validated()

    def to_env(self) -> dict[str, str]:
        """``DRIFTLINE_*`` variables that rebuild these settings in another process."""
        env: dict[str, str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name == "bin_edges":
                value = orjson.dumps({k: list(v) for k, v in value.items()}).decode()
            if field.name == "models":
                value = dump_models(dict(value))
            env[_PREFIX + field.name.upper()] = str(value)
        return env

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, safe to print or log."""
        out = dataclasses.asdict(self)
        for name in _SECRET_FIELDS:
            if out.get(name):
                out[name] = "***"
        return out

    def _validated(self) -> Settings:
        positive = ("partitions", "window_seconds", "histogram_bins", "edge_sample_size",
                    "fine_histogram_bins", "baseline_windows",
                    "top_k_categories", "max_tracked_categories", "batch_max_messages",
                    "stream_buffer_messages",
                    "label_ttl_seconds", "early_label_ttl_seconds", "judge_after_seconds",
                    "outcome_ttl_seconds", "outcome_judge_after_seconds", "webhook_attempts")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{_PREFIX}{name.upper()} must be positive, "
                                 f"got {getattr(self, name)}")
        from driftline.models.alerting.webhooks import parse_targets  # checked once, here

        parse_targets(self.webhooks)
        parse_targets(self.retraining_webhooks, "DRIFTLINE_RETRAINING_WEBHOOKS")
        if not 0.5 <= self.outcome_confidence < 1:
            raise ValueError(f"{_PREFIX}OUTCOME_CONFIDENCE must be in [0.5, 1), e.g. 0.95")
        if self.release_memory_seconds < 0:
            raise ValueError(f"{_PREFIX}RELEASE_MEMORY_SECONDS must be >= 0 (0: never)")
        if self.allowed_lateness_seconds < 0:
            raise ValueError(f"{_PREFIX}ALLOWED_LATENESS_SECONDS must be >= 0")
        for name, allowed in (("detectors", {"adwin", "kswin", "page_hinkley"}),
                              ("detector_streams", {"score", "feature_means"})):
            unknown = set(_items(getattr(self, name))) - allowed
            if unknown:
                raise ValueError(f"{_PREFIX}{name.upper()} names {', '.join(sorted(unknown))}: "
                                 f"choose from {', '.join(sorted(allowed))}")
        if self.top_k_categories > self.max_tracked_categories:
            raise ValueError(f"{_PREFIX}TOP_K_CATEGORIES must not exceed "
                             f"{_PREFIX}MAX_TRACKED_CATEGORIES")
        return self


def _parse(name: str, hint: Any, raw: str) -> Any:
    var = f"{_PREFIX}{name.upper()}"
    if name == "bin_edges":
        return _parse_bin_edges(var, raw)
    if name == "models":
        return parse_models(var, raw)
    args = [a for a in get_args(hint) if a is not type(None)]
    if hint is int or args == [int]:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not an integer: set it to a whole number "
                             f"of {'seconds' if 'seconds' in name else 'units'}") from None
    if hint is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{var}={raw!r} is not true or false")
        return raw.lower() in ("true", "1")
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{var}={raw!r} is not a number") from None
    if get_args(hint) and all(isinstance(a, str) for a in get_args(hint)):
        if raw not in get_args(hint):
            raise ValueError(f"{var}={raw!r} is not one of {', '.join(get_args(hint))}")
        return raw
    return raw or None if args else raw


def _parse_bin_edges(var: str, raw: str) -> dict[str, tuple[float, ...]]:
    try:
        parsed = orjson.loads(raw)
        edges = {str(k): tuple(float(x) for x in v) for k, v in parsed.items()}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise ValueError(f'{var} must be a JSON object like {{"amount": [0, 10, 100]}}') from None
    for feature, values in edges.items():
        if len(values) < 2 or any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError(f"{var}: edges of {feature!r} must be at least two increasing numbers")
    return edges


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
