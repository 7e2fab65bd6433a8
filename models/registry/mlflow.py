"""An MLflow Model Registry's versions, read through its REST API, as registry records.

A model version as ``GET /api/2.0/mlflow/model-versions/search`` returns it, with the run
that trained it as ``GET /api/2.0/mlflow/runs/get`` returns it (``None`` when the version
has no run or the run is gone), becomes a :class:`ModelVersion`:

* ``model`` and ``version`` are the registered model's name and MLflow's version string;
  ``created_at_ms`` is the version's ``creation_timestamp``, ``description`` its own;
* ``training_run_id`` is its ``run_id``; ``code_revision`` the run's
  ``mlflow.source.git.commit`` tag; ``parameters`` the run's params; ``training_metrics``
  the run's latest value of each metric (those that are finite numbers: MLflow keeps NaN);
* ``training_data`` names the run's training dataset input (the first whose
  ``mlflow.data.context`` tag is ``training``, else its first): ``name@digest`` and where it
  was read from, when the run says;
* ``reference_profile_id`` is the version's ``driftline.reference_id`` tag, if it has one.

The registered model's aliases (``champion``) and the version's legacy stage become
:class:`Deployment` events at the version's ``last_updated_timestamp``: an alias or the
``Production`` / ``Staging`` stage is ``deployed`` to that environment (``production``,
``staging``), ``Archived`` is ``retired``. Every alias and stage of a version lands in one
record per event (``environment`` lists them), since their keys would be the same.

Everything is derived from the documents alone, in a fixed order, so importing an unchanged
registry again gives byte-identical records under the same keys (compaction keeps one). A
version the records refuse raises their :class:`RecordError`, whose text says why.
Pure: :mod:`driftline.streams.registry.mlflow_import` fetches the documents.

>>> version = {"name": "fraud-detector", "version": "3", "creation_timestamp": 1764230400000,
...            "last_updated_timestamp": 1764234000000, "current_stage": "Production",
...            "run_id": "9c1e", "tags": [{"key": "driftline.reference_id", "value": "p-7"}]}
>>> run = {"info": {"run_id": "9c1e"}, "data": {
...     "metrics": [{"key": "auc", "value": 0.94, "timestamp": 1764230000000, "step": 3}],
...     "params": [{"key": "max_depth", "value": "8"}],
...     "tags": [{"key": "mlflow.source.git.commit", "value": "3f2a9c1"}]},
...     "inputs": {"dataset_inputs": [{"dataset": {
...         "name": "features", "digest": "a1b2", "source_type": "s3",
...         "source": '{"uri": "s3://features/2025-11"}'}}]}}
>>> v = model_version(version, run)
>>> v.key, v.training_run_id, v.code_revision, v.reference_profile_id
(b'version:fraud-detector/3', '9c1e', '3f2a9c1', 'p-7')
>>> v.training_data, v.parameters, v.training_metrics
('features@a1b2 (s3://features/2025-11)', {'max_depth': '8'}, {'auc': 0.94})
>>> aliases = aliases_by_version({"name": "fraud-detector",
...                               "aliases": [{"alias": "champion", "version": "3"}]})
>>> [(d.event, d.environment, d.at_ms) for d in deployments(version, aliases["3"])]
[('deployed', 'champion, production', 1764234000000)]
>>> try:
...     model_version({**version, "name": "m" * 300})
... except RecordError as refused:
...     print(refused)
model must be a non-empty string of at most 256 characters
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from driftline.models.registry.records import (
    Deployment,
    DeploymentEvent,
    ModelVersion,
    RecordError,
)

__all__ = ["GIT_COMMIT_TAG", "REFERENCE_TAG", "aliases_by_version", "deployments",
           "model_version", "training_data", "version_records"]

#: The run tag MLflow sets to the commit of the code that ran.
GIT_COMMIT_TAG = "mlflow.source.git.commit"
#: The version tag naming the version's reference profile (its ``profile_id``).
REFERENCE_TAG = "driftline.reference_id"
_DATASET_CONTEXT_TAG = "mlflow.data.context"

#: Legacy stages and what they mean here: (event, environment).
_STAGES: dict[str, tuple[DeploymentEvent, str]] = {
    "Production": ("deployed", "production"),
    "Staging": ("deployed", "staging"),
    "Archived": ("retired", ""),
}

_EVENTS: tuple[DeploymentEvent, ...] = ("deployed", "retired")

#: Keys of a dataset's ``source`` document that say where it was read from.
_LOCATION_KEYS = ("uri", "path", "url", "table_name", "delta_table_name", "source")


def version_records(version: Mapping[str, Any], run: Mapping[str, Any] | None = None,
                    aliases: Sequence[str] | None = None) -> list[ModelVersion | Deployment]:
    """The version's record, then its deployments (see :func:`deployments`)."""
    return [model_version(version, run), *deployments(version, aliases)]


def model_version(version: Mapping[str, Any],
                  run: Mapping[str, Any] | None = None) -> ModelVersion:
    """A model version document and its run's (``runs/get``'s ``run``) as a record."""
    tags = _pairs(version.get("tags"))
    data = run.get("data") if run is not None else None
    data = data if isinstance(data, Mapping) else {}
    run_tags = _pairs(data.get("tags"))
    return ModelVersion(
        _text(version, "name", required=True), _text(version, "version", required=True),
        created_at_ms=_millis(version, "creation_timestamp"),
        training_run_id=_text(version, "run_id"),
        code_revision=run_tags.get(GIT_COMMIT_TAG, ""),
        training_data=training_data(run) if run is not None else "",
        reference_profile_id=tags.get(REFERENCE_TAG, ""),
        parameters=dict(sorted(_pairs(data.get("params")).items())),
        training_metrics=dict(sorted(_metrics(data.get("metrics")).items())),
        description=_text(version, "description"))


def deployments(version: Mapping[str, Any],
                aliases: Sequence[str] | None = None) -> list[Deployment]:
    """What the version's aliases (``aliases``, else those the document lists, as
    ``model-versions/get`` gives them) and its stage say of its deployment: at most one
    ``deployed`` and one ``retired`` record, at its ``last_updated_timestamp``."""
    if aliases is None:
        listed = version.get("aliases")
        aliases = [a for a in listed if isinstance(a, str)] if isinstance(listed, list) else []
    model = _text(version, "name", required=True)
    number = _text(version, "version", required=True)
    at_ms = (_millis(version, "last_updated_timestamp")
             if version.get("last_updated_timestamp") is not None
             else _millis(version, "creation_timestamp"))
    environments: dict[DeploymentEvent, list[str]] = {}
    notes: dict[DeploymentEvent, list[str]] = {}
    for alias in sorted(set(aliases)):
        environments.setdefault("deployed", []).append(alias)
        notes.setdefault("deployed", []).append(f"alias {alias}")
    stage = _text(version, "current_stage")
    if stage in _STAGES:
        event, environment = _STAGES[stage]
        where = environments.setdefault(event, [])
        if environment and environment not in where:
            where.append(environment)
        notes.setdefault(event, []).append(f"stage {stage}")
    return [Deployment(model, number, event, at_ms,
                       environment=", ".join(environments.get(event, ())),
                       note="MLflow " + ", ".join(notes[event]))
            for event in _EVENTS if event in notes]


def aliases_by_version(registered_model: Mapping[str, Any]) -> dict[str, list[str]]:
    """A registered model document's aliases (``[{"alias", "version"}]``), by version."""
    found: dict[str, list[str]] = {}
    listed = registered_model.get("aliases")
    for entry in listed if isinstance(listed, list) else ():
        if isinstance(entry, Mapping) and isinstance(entry.get("alias"), str) \
                and entry.get("version") is not None:
            found.setdefault(str(entry["version"]), []).append(entry["alias"])
    return {version: sorted(names) for version, names in found.items()}


def training_data(run: Mapping[str, Any]) -> str:
    """What the run's training dataset input says of it: ``name@digest (location)``, the
    parts it has; "" when the run logged no dataset."""
    inputs = run.get("inputs")
    listed = inputs.get("dataset_inputs") if isinstance(inputs, Mapping) else None
    found = [i for i in listed if isinstance(i, Mapping)
             and isinstance(i.get("dataset"), Mapping)] if isinstance(listed, list) else []
    if not found:
        return ""
    training = [i for i in found
                if _pairs(i.get("tags")).get(_DATASET_CONTEXT_TAG) == "training"]
    dataset = (training or found)[0]["dataset"]
    name, digest = _text(dataset, "name"), _text(dataset, "digest")
    label = f"{name}@{digest}" if name and digest else name or digest
    location = _location(_text(dataset, "source"))
    if label and location:
        return f"{label} ({location})"
    return label or location


def _location(source: str) -> str:
    """Where a dataset ``source`` (a JSON document MLflow serialised) points."""
    try:
        doc = orjson.loads(source) if source else None
    except orjson.JSONDecodeError:
        return source
    if isinstance(doc, Mapping):
        for key in _LOCATION_KEYS:
            if isinstance(doc.get(key), str) and doc[key]:
                return str(doc[key])
        return ""
    return doc if isinstance(doc, str) else ""


def _pairs(items: Any) -> dict[str, str]:
    """MLflow's ``[{"key": ..., "value": ...}]`` (tags, params) as a dict."""
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    pairs: dict[str, str] = {}
    for item in items if isinstance(items, Iterable) and not isinstance(items, str) else ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            value = item.get("value")
            pairs[item["key"]] = "" if value is None else str(value)
    return pairs


def _metrics(items: Any) -> dict[str, float]:
    """The latest value of each metric that is a finite number (MLflow writes NaN as
    ``"NaN"`` and keeps infinities as the largest double)."""
    found: dict[str, float] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value) and abs(value) != sys.float_info.max:
            found[item["key"]] = float(value)
    return found


def _text(doc: Mapping[str, Any], field: str, required: bool = False) -> str:
    value = doc.get(field)
    if value is None:
        if required:
            raise RecordError(f"the MLflow document has no {field!r}")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RecordError(f"the MLflow document's {field!r} is not text: {value!r:.40}")
    return str(value)


def _millis(doc: Mapping[str, Any], field: str) -> int:
    """An epoch-millisecond field: a number, or digits (int64 as some servers send it)."""
    value = doc.get(field)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if type(value) is int:
        return value
    raise RecordError(f"the MLflow document's {field!r} must be epoch milliseconds, got "
                      f"{value!r:.40}")
