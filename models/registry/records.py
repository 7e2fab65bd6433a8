"""What training pipelines and deploy tools say about model versions: the version record
(what it was trained on, with what, how well) and deployment events (which version went
live or was rolled back, when, with what share of traffic).

Both travel as JSON on the compacted registry topic, keyed so the latest record of a key
is the one kept: ``version:<model>/<version>`` and
``deployment:<model>/<version>/<at_ms>/<event>``. Workers read the whole topic, mirror it
into ClickHouse (``model_versions``, ``deployments``) and use it to describe alerts and to
flag predictions from versions never registered.

>>> v = ModelVersion("fraud-detector", "v2", created_at_ms=1764230400000,
...                  training_run_id="run-81", training_data="s3://features/2026-11",
...                  training_metrics={"auc": 0.94})
>>> ModelVersion.from_json(v.to_json()) == v, v.key
(True, b'version:fraud-detector/v2')
>>> Deployment("fraud-detector", "v2", "deployed", 1764234000000, traffic_share=0.5).key
b'deployment:fraud-detector/v2/1764234000000/deployed'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, Self, get_args

import orjson

from driftline.models.events.wire import MAX_EVENT_TIME_MS, MAX_NAME_LENGTH, MIN_EVENT_TIME_MS

__all__ = ["Deployment", "DeploymentEvent", "ModelVersion", "RecordError", "decode_record"]

DeploymentEvent = Literal["deployed", "rolled_back", "retired"]


class RecordError(ValueError):
    """A registry record that cannot be used; the text says why, in one line."""


class _Record:
    """JSON both ways, every field by name (unknown fields refused)."""

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        record: Self = _from_json(cls, data)
        return record


@dataclasses.dataclass(frozen=True)
class ModelVersion(_Record):
    """One registered model version."""

    model: str
    version: str
    created_at_ms: int
    training_run_id: str = ""
    code_revision: str = ""
    #: Where the training data came from: a table, a path, a dataset id.
    training_data: str = ""
    #: The reference profile published for this version, if any (its ``profile_id``).
    reference_profile_id: str = ""
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    training_metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    description: str = ""
    type: Literal["model_version"] = "model_version"

    def __post_init__(self) -> None:
        _names(self.model, self.version)
        _time("created_at_ms", self.created_at_ms)
        for name, value in self.training_metrics.items():
            if not isinstance(value, int | float) or isinstance(value, bool) \
                    or not math.isfinite(value):
                raise RecordError(f"training metric {name!r} must be a finite number")
        object.__setattr__(self, "parameters", {str(k): str(v)
                                                for k, v in self.parameters.items()})
        object.__setattr__(self, "training_metrics", {str(k): float(v)
                                                      for k, v in self.training_metrics.items()})

    @property
    def key(self) -> bytes:
        return f"version:{self.model}/{self.version}".encode()


@dataclasses.dataclass(frozen=True)
class Deployment(_Record):
    """A version going live, rolled back or retired, at ``at_ms``."""

    model: str
    version: str
    event: DeploymentEvent
    at_ms: int
    #: The share of the model's traffic the version serves from then on (0..1).
    traffic_share: float = 1.0
    environment: str = ""
    note: str = ""
    type: Literal["deployment"] = "deployment"

    def __post_init__(self) -> None:
        _names(self.model, self.version)
        _time("at_ms", self.at_ms)
        if self.event not in get_args(DeploymentEvent):
            raise RecordError(f"deployment event must be one of {get_args(DeploymentEvent)}, "
                              f"got {self.event!r:.40}")
        if not (isinstance(self.traffic_share, int | float)
                and 0.0 <= self.traffic_share <= 1.0):
            raise RecordError(f"traffic_share must be between 0 and 1, got "
                              f"{self.traffic_share!r:.40}")

    @property
    def key(self) -> bytes:
        return f"deployment:{self.model}/{self.version}/{self.at_ms}/{self.event}".encode()


def decode_record(value: bytes) -> ModelVersion | Deployment:
    """A registry message's record, by its ``type``; :class:`RecordError` otherwise."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise RecordError(f"not valid JSON: {e}") from None
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "model_version":
        return ModelVersion.from_json(value)
    if kind == "deployment":
        return Deployment.from_json(value)
    raise RecordError(f"unknown registry record type {kind!r:.40}: expected model_version or "
                      "deployment")


def _from_json(cls: Any, data: bytes | str) -> Any:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise RecordError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RecordError("a registry record is a JSON object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = doc.keys() - names
    if unknown:
        raise RecordError(f"unknown fields {sorted(unknown)!r:.80}")
    try:
        return cls(**doc)
    except TypeError as e:
        raise RecordError(str(e)) from None


def _names(model: Any, version: Any) -> None:
    for field, value in (("model", model), ("version", version)):
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
            raise RecordError(f"{field} must be a non-empty string of at most "
                              f"{MAX_NAME_LENGTH} characters")


def _time(field: str, value: Any) -> None:
    if type(value) is not int or not MIN_EVENT_TIME_MS <= value <= MAX_EVENT_TIME_MS:
        raise RecordError(f"{field} must be UTC epoch milliseconds (an integer), got "
                          f"{value!r:.40}")
