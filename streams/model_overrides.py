"""Per-model label and outcome settings, from one JSON object in ``DRIFTLINE_MODELS``.

Models differ in how their labels come: a click within seconds, a chargeback within 90
days. Each key overrides the worker-wide default for one model::

    DRIFTLINE_MODELS='{"fraud-detector": {"label_ttl_seconds": 7776000,
                                          "judge_after_seconds": 604800,
                                          "positive_class": "fraud"},
                       "eta": {"task": "regression"}}'

>>> models = parse_models("DRIFTLINE_MODELS", '{"eta": {"task": "regression"}}')
>>> models["eta"].task, models["eta"].label_ttl_seconds
('regression', None)
>>> parse_models("DRIFTLINE_MODELS", '{"eta": {"ttl": 5}}')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: DRIFTLINE_MODELS: model 'eta' has unknown key 'ttl'; use label_ttl_seconds, ...
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import orjson

Task = Literal["classification", "regression"]


@dataclasses.dataclass(frozen=True)
class ModelOverrides:
    """One model's label and outcome settings; None keeps the worker-wide default."""

    #: Event time a prediction waits for its label; later labels are expired.
    label_ttl_seconds: int | None = None
    #: Event time a label that came before its prediction waits for it.
    early_label_ttl_seconds: int | None = None
    #: Event time after a window's end at which its quality is judged (alerts).
    judge_after_seconds: int | None = None
    #: Event time a prediction waits for its business outcomes.
    outcome_ttl_seconds: int | None = None
    #: Event time after a window's end at which its outcomes are judged.
    outcome_judge_after_seconds: int | None = None
    #: The version challengers are compared with; None: the version that served first.
    champion: str | None = None
    task: Task | None = None
    #: The class a bare ``score`` is the probability of.
    positive_class: str | None = None
    #: The ``service.name`` its serving spans carry, when it is not the model's name: its
    #: latency alerts name the slow hop downstream of that service.
    service: str | None = None


_KEYS = tuple(f.name for f in dataclasses.fields(ModelOverrides))


def parse_models(var: str, raw: str) -> dict[str, ModelOverrides]:
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise ValueError(f'{var} must be a JSON object like {{"model": {{"label_ttl_seconds": '
                         '86400}}}}') from None
    if not isinstance(doc, dict):
        raise ValueError(f"{var} must be a JSON object keyed by model name")
    return {str(model): _overrides(var, str(model), fields) for model, fields in doc.items()}


def _overrides(var: str, model: str, fields: Any) -> ModelOverrides:
    if not isinstance(fields, dict):
        raise ValueError(f"{var}: model {model!r} must map to an object of settings")
    for key, value in fields.items():
        if key not in _KEYS:
            raise ValueError(f"{var}: model {model!r} has unknown key {key!r}; "
                             f"use {', '.join(_KEYS)}")
        if key.endswith("_seconds") and (type(value) is not int or value <= 0):
            raise ValueError(f"{var}: {model!r} {key} must be a positive whole number of seconds")
        if key == "task" and value not in ("classification", "regression"):
            raise ValueError(f"{var}: {model!r} task must be classification or regression")
        if key in ("positive_class", "champion", "service") and not isinstance(value, str):
            raise ValueError(f"{var}: {model!r} {key} must be a string")
    return ModelOverrides(**fields)


def dump_models(models: dict[str, ModelOverrides]) -> str:
    return orjson.dumps({m: {k: v for k, v in dataclasses.asdict(o).items() if v is not None}
                         for m, o in models.items()}).decode()
