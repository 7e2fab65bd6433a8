"""Decode and validate what arrives on the source topics, one Kafka message at a time.

Two wire forms share the topics, both JSON, keyed by model name:

* a single event per message: ``{"type": "prediction", ...}``, ``{"type": "label", ...}``
  or ``{"type": "outcome", ...}``, what any Kafka producer in any language can send;
* a batch envelope of one model (and, for predictions, one version) whose fields are
  columns: ``{"type": "prediction_batch", "event_time": [...], "features": {"x": [...]}}``,
  what driftline's publisher sends. Each column becomes a numpy array in one call.

Both decode to the same :class:`EventBlock` of columns, so the worker has one code path.
A message that cannot be read (not JSON, a required field or column missing, a column of
the wrong length, a bad name, key or event time) raises :class:`BadMessage` with a one-line
reason; the worker sends it to the dead-letter topic and carries on. A *value* of the wrong
type (a string among a numeric feature's numbers, a list or an object anywhere, a score that
is not a number) is not a reason to lose the message's other events: it is dropped, its
position kept in :attr:`EventBlock.invalid`, and its window counts it as invalid.

A third, tiny message type, ``{"type": "watermark", "model": "fraud", "event_time": ms}``,
lets a producer (or the worker's idle timer) move a quiet model's event time forward so
its open windows close; without ``model`` it moves every model on the partition.

>>> block = decode(b"fraud", b'{"type":"prediction","model":"fraud","version":"v1",'
...                b'"request_id":"r1","event_time":1764230400000,"features":{"x":1.5,"c":"DE"}}')
>>> block.kind, block.model, block.version, len(block)
('prediction', 'fraud', 'v1', 1)
>>> block.features  # a single event's status defaults to "ok"
{'x': [1.5], 'c': ['DE'], 'service.status': ['ok']}
>>> bad = decode(b"fraud", b'{"type":"prediction_batch","model":"fraud","version":"v1",'
...             b'"request_id":["r1","r2","r3"],"event_time":[1764230400000,1764230400001,'
...             b'1764230400002],"features":{"x":[1.5,"n/a",2.5]}}')
>>> bad.features["x"], bad.invalid  # the string is dropped, the other events kept
([1.5, None, 2.5], {'x': [1]})
>>> decode(b"fraud", b'{"type":"prediction","model":"fraud"}')
Traceback (most recent call last):
...
driftline.models.events.wire.BadMessage: prediction event lacks required field 'version'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

BlockKind = Literal["prediction", "label", "outcome", "watermark"]

#: Event times must be UTC epoch milliseconds between 2000-01-01 and 2200-01-01.
MIN_EVENT_TIME_MS = 946_684_800_000
MAX_EVENT_TIME_MS = 7_258_118_400_000
MAX_NAME_LENGTH = 256
#: The model's outputs are monitored like features under these reserved names.
OUTPUT = "output."
SCORE_FEATURE = "output.score"
PREDICTION_FEATURE = "output.prediction"
#: The serving service's own measures are watched too (service windows, not drift).
SERVICE = "service."
#: Business outcomes are judged under ``outcome.<name>`` (rules, alerts, invalid counts).
OUTCOME = "outcome."
LATENCY_FEATURE = "service.latency_ms"
STATUS_FEATURE = "service.status"
_RESERVED = (OUTPUT, SERVICE)

_NUMBER_TYPES: frozenset[type] = frozenset({int, float, bool, type(None)})
_KIND_OF_TYPE: dict[type, Literal["numeric", "categorical", "missing"]] = {
    int: "numeric", float: "numeric", bool: "numeric", str: "categorical",
    type(None): "missing"}
_STRING_TYPES: frozenset[type] = frozenset({str, type(None)})
_SCALAR_TYPES = _NUMBER_TYPES | _STRING_TYPES
#: Scores, probabilities, latencies: numbers or null, never booleans.
_MEASURE_TYPES: frozenset[type] = frozenset({int, float, type(None)})
_LABEL_TYPES: frozenset[type] = frozenset({int, float, bool, str})


class BadMessage(ValueError):
    """A message that cannot be processed; the text says why, in one line."""


@dataclasses.dataclass(slots=True)
class EventBlock:
    """Columns of the events one message carried (one event for the single form).

    ``features`` maps a name to a list with one value per event (``None`` for missing);
    ``feature_kinds`` says whether each column holds numbers or strings, or is all missing.
    """

    kind: BlockKind
    model: str
    version: str
    event_time: list[int]
    request_id: list[str] = dataclasses.field(default_factory=list)
    features: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    feature_kinds: dict[str, Literal["numeric", "categorical", "missing"]] = dataclasses.field(
        default_factory=dict
    )
    prediction: list[Any] | None = None
    score: list[float | None] | None = None
    probabilities: dict[str, list[float | None]] | None = None
    latency_ms: list[float | None] | None = None
    status: list[str | None] | None = None
    label: list[Any] | None = None
    #: Business outcomes of the requests, per name: a number per event, None where the
    #: event does not report that outcome (booleans arrive as 1.0 / 0.0).
    outcomes: dict[str, list[float | None]] | None = None
    #: Per feature (outputs and service measures by their reserved names), the positions of
    #: the events whose value was dropped for its type; the feature's column holds None there.
    invalid: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    #: When the broker took the message (its record timestamp) and when the worker read it,
    #: epoch ms; set by the worker, not the wire (None when unknown).
    broker_time_ms: int | None = None
    received_ms: int | None = None

    def __len__(self) -> int:
        return len(self.event_time)


def load_json(value: bytes | None, max_bytes: int) -> Any:
    """A message value parsed as JSON, or :class:`BadMessage` (none, too big, not JSON)."""
    if value is None:
        raise BadMessage("message has no value")
    if len(value) > max_bytes:
        raise BadMessage(f"message is {len(value)} bytes, over the {max_bytes}-byte limit")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not valid JSON: {exc}") from None


def decode(key: bytes | None, value: bytes | None, max_bytes: int = 8 * 1024 * 1024) -> EventBlock:
    """Decode one Kafka message into an :class:`EventBlock`, or raise :class:`BadMessage`."""
    doc = load_json(value, max_bytes)
    if not isinstance(doc, dict):
        raise BadMessage(f"expected a JSON object, got {type(doc).__name__}")
    kind = doc.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        known = ", ".join(sorted(_DECODERS))
        raise BadMessage(f"unknown type {kind!r:.80}: expected one of {known}")
    block = decoder(doc)
    if block.model:  # a watermark for the whole partition names no model and needs no key
        _check_key(key, block.model)
    return block


def _check_key(key: bytes | None, model: str) -> None:
    # Windows of a model live on one partition; a message keyed otherwise would split them.
    # Compared as bytes: a key that is not UTF-8 is not the model, whatever it decodes to.
    if key != model.encode():
        shown = None if key is None else key.decode("utf-8", "replace")
        raise BadMessage(f"message key {shown!r:.80} must be the model name {model!r:.80}")


def _decode_prediction(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "prediction", with_version=True)
    block.request_id = [_name(doc, "request_id", "prediction event")]
    features = doc.get("features")
    features = {} if features is None else features
    if not isinstance(features, dict):
        raise BadMessage("'features' must be an object of name -> number, string or null")
    for name, value in features.items():
        kind = _KIND_OF_TYPE.get(type(value))
        if kind is None or not name or len(name) > MAX_NAME_LENGTH or name.startswith(_RESERVED):
            _set_feature(block, name, [value])  # checks the name; drops a bad value
        else:
            block.features[name] = [value]
            block.feature_kinds[name] = kind
    _set_outputs(block, doc, 1, lambda field: [doc.get(field, "ok" if field == "status"
                                                      else None)])
    probabilities = doc.get("probabilities")
    if probabilities is not None:
        if not isinstance(probabilities, dict):
            raise BadMessage("'probabilities' must be an object of class -> number")
        block.probabilities = {str(c): _measures(block, SCORE_FEATURE, [p])
                               for c, p in probabilities.items()}
    _add_outputs(block)
    return block


def _decode_prediction_batch(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "prediction", with_version=True, batch=True)
    n = len(block)
    block.request_id = _request_ids(doc, n)
    features = doc.get("features")
    features = {} if features is None else features
    if not isinstance(features, dict):
        raise BadMessage("'features' must be an object of name -> column")
    for name, column in features.items():
        if not isinstance(column, list) or len(column) != n:
            raise BadMessage(f"feature {name!r:.80} must be a list of {n} values")
        _set_feature(block, name, column)
    _set_outputs(block, doc, n, lambda field: _column(doc, field, n))
    probabilities = doc.get("probabilities")
    if probabilities is not None:
        if not isinstance(probabilities, dict):
            raise BadMessage("'probabilities' must be an object of class -> column")
        block.probabilities = {}
        for c in probabilities:
            column = _column(probabilities, c, n)
            if column is None:
                raise BadMessage(f"batch lacks required column {c!r:.80}")
            block.probabilities[str(c)] = _measures(block, SCORE_FEATURE, column)
    _add_outputs(block)
    return block


def _set_outputs(block: EventBlock, doc: Mapping[str, Any], n: int,
                 column_of: Callable[[str], list[Any] | None]) -> None:
    """The prediction, score, latency and status columns; a value of the wrong type is
    dropped and counted under the output's reserved name."""
    prediction = column_of("prediction")
    if prediction is not None:
        block.prediction = _keep(block, PREDICTION_FEATURE, prediction, _SCALAR_TYPES)
    score = column_of("score")
    block.score = None if score is None else _measures(block, SCORE_FEATURE, score)
    latency = column_of("latency_ms")
    block.latency_ms = None if latency is None else _measures(block, LATENCY_FEATURE, latency)
    status = column_of("status")
    block.status = None if status is None else _keep(block, STATUS_FEATURE, status, _STRING_TYPES)


def _measures(block: EventBlock, name: str, column: list[Any]) -> list[Any]:
    return _keep(block, name, column, _MEASURE_TYPES)


def _keep(block: EventBlock, name: str, column: list[Any], allowed: frozenset[type]) -> list[Any]:
    """``column`` with every value of a type outside ``allowed`` dropped (None) and its
    position added to ``block.invalid[name]``."""
    if set(map(type, column)) <= allowed:
        return column
    bad = [i for i, value in enumerate(column) if type(value) not in allowed]
    mark_invalid(block, name, bad)
    kept = list(column)
    for i in bad:
        kept[i] = None
    return kept


def mark_invalid(block: EventBlock, name: str, positions: list[int]) -> None:
    """Add ``positions`` (events whose value of ``name`` was dropped) to ``block.invalid``."""
    if positions:
        known = block.invalid.get(name)
        block.invalid[name] = positions if known is None else sorted({*known, *positions})


def _decode_label(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "label", with_version=False)
    block.request_id = [_name(doc, "request_id", "label event")]
    label = doc.get("label")
    if label is None:
        raise BadMessage("label event lacks required field 'label'")
    block.label = [_scalar(label, "label")]
    return block


def _decode_label_batch(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "label", with_version=False, batch=True)
    n = len(block)
    block.request_id = _request_ids(doc, n)
    block.label = _required_column(doc, "label", n, _LABEL_TYPES)
    return block


def _decode_outcome(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "outcome", with_version=False)
    block.request_id = [_name(doc, "request_id", "outcome event")]
    outcomes = doc.get("outcomes")
    if not isinstance(outcomes, dict) or not outcomes:
        raise BadMessage("outcome event needs 'outcomes' as an object of name -> number or "
                         "boolean, e.g. {\"converted\": true, \"revenue\": 12.5}")
    _set_outcomes(block, {name: [value] for name, value in outcomes.items()})
    return block


def _decode_outcome_batch(doc: Mapping[str, Any]) -> EventBlock:
    block = _header(doc, "outcome", with_version=False, batch=True)
    n = len(block)
    block.request_id = _request_ids(doc, n)
    outcomes = doc.get("outcomes")
    if not isinstance(outcomes, dict) or not outcomes:
        raise BadMessage("outcome batch needs 'outcomes' as an object of name -> column")
    for name, column in outcomes.items():
        if not isinstance(column, list) or len(column) != n:
            raise BadMessage(f"outcome {name!r:.80} must be a list of {n} values")
    _set_outcomes(block, outcomes)
    return block


def _set_outcomes(block: EventBlock, columns: Mapping[str, list[Any]]) -> None:
    """Outcome columns as floats; a value that is not a finite number or boolean is
    dropped (None) and its position kept in ``block.invalid`` under ``outcome.<name>``."""
    block.outcomes = {}
    for name, column in columns.items():
        if not name or len(name) > MAX_NAME_LENGTH:
            raise BadMessage(f"outcome name {name[:40]!r} must be 1 to {MAX_NAME_LENGTH} "
                             "characters")
        values: list[float | None] = []
        bad = []
        for i, value in enumerate(column):
            if value is None:
                values.append(None)
            elif type(value) in _NUMBER_TYPES and math.isfinite(value):
                values.append(float(value))
            else:
                values.append(None)
                bad.append(i)
        mark_invalid(block, OUTCOME + name, bad)
        block.outcomes[name] = values


def _decode_watermark(doc: Mapping[str, Any]) -> EventBlock:
    model = _name(doc, "model", "watermark") if doc.get("model") is not None else ""
    return EventBlock("watermark", model, "", [_event_time(doc.get("event_time"))])


_DECODERS = {
    "prediction": _decode_prediction,
    "prediction_batch": _decode_prediction_batch,
    "label": _decode_label,
    "label_batch": _decode_label_batch,
    "outcome": _decode_outcome,
    "outcome_batch": _decode_outcome_batch,
    "watermark": _decode_watermark,
}


def _header(doc: Mapping[str, Any], kind: BlockKind, *, with_version: bool,
            batch: bool = False) -> EventBlock:
    what = f"{kind} {'batch' if batch else 'event'}"
    model = _name(doc, "model", what)
    version = _name(doc, "version", what) if with_version else ""
    if batch:
        times = doc.get("event_time")
        if not isinstance(times, list) or not times:
            raise BadMessage(f"{what} needs 'event_time' as a non-empty list of epoch ms")
        if not set(map(type, times)) <= {int}:
            raise BadMessage("'event_time' must hold integers (UTC epoch milliseconds)")
        if min(times) < MIN_EVENT_TIME_MS or max(times) > MAX_EVENT_TIME_MS:
            raise BadMessage("'event_time' is out of range: send UTC epoch milliseconds")
        return EventBlock(kind, model, version, times)
    return EventBlock(kind, model, version, [_event_time(doc.get("event_time"))])


def _name(doc: Mapping[str, Any], field: str, what: str) -> str:
    value = doc.get(field)
    if value is None:
        raise BadMessage(f"{what} lacks required field {field!r}")
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise BadMessage(f"{field!r} must be a non-empty string of at most "
                         f"{MAX_NAME_LENGTH} characters")
    return value


def _event_time(value: Any) -> int:
    if value is None:
        raise BadMessage("event lacks required field 'event_time' (UTC epoch milliseconds)")
    if type(value) is not int:
        raise BadMessage(f"'event_time' must be an integer of UTC epoch milliseconds, "
                         f"got {value!r:.80}")
    if not MIN_EVENT_TIME_MS <= value <= MAX_EVENT_TIME_MS:
        raise BadMessage(f"'event_time' {value} is out of range: send UTC epoch milliseconds")
    return value


def _add_outputs(block: EventBlock) -> None:
    """Monitor the model's outputs like features: ``output.score``, ``output.prediction``;
    and the service's latency and status: ``service.latency_ms``, ``service.status``."""
    for name, column in ((SCORE_FEATURE, block.score), (PREDICTION_FEATURE, block.prediction),
                         (LATENCY_FEATURE, block.latency_ms), (STATUS_FEATURE, block.status)):
        if column is not None:
            kind = _column_kind(column)
            # A prediction mixing numbers and strings (allowed): not watched. All missing:
            # nothing to watch, unless values were dropped (counted as invalid).
            if kind is not None and (kind != "missing" or name in block.invalid):
                block.features[name] = column
                block.feature_kinds[name] = kind


def _column_kind(column: list[Any]) -> Literal["numeric", "categorical", "missing"] | None:
    types = set(map(type, column))
    if types <= {type(None)}:
        return "missing"
    if types <= _NUMBER_TYPES:
        return "numeric"
    if types <= _STRING_TYPES:
        return "categorical"
    return None


def _set_feature(block: EventBlock, name: str, column: list[Any]) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise BadMessage(f"feature name {name[:40]!r} must be 1 to {MAX_NAME_LENGTH} characters")
    if name.startswith(_RESERVED):
        raise BadMessage(f"feature name {name!r:.80}: names starting with {' or '.join(_RESERVED)} "
                         "are reserved for the model's outputs and its service's measures")
    kind = _column_kind(column)
    if kind is None:
        column, kind = _majority(block, name, column)
    block.features[name] = column
    block.feature_kinds[name] = kind


def _majority(block: EventBlock, name: str,
              column: list[Any]) -> tuple[list[Any], Literal["numeric", "categorical", "missing"]]:
    """A column mixing kinds keeps the kind most of its values have (numbers on a tie);
    the other values, and any list or object, are dropped as invalid."""
    types = list(map(type, column))
    numbers = sum(t in _NUMBER_TYPES and t is not type(None) for t in types)
    strings = types.count(str)
    if not numbers and not strings:
        kept = _keep(block, name, column, frozenset({type(None)}))
        return kept, "missing"
    if numbers >= strings:
        return _keep(block, name, column, _NUMBER_TYPES), "numeric"
    return _keep(block, name, column, _STRING_TYPES), "categorical"


def _request_ids(doc: Mapping[str, Any], n: int) -> list[str]:
    ids = _required_column(doc, "request_id", n, frozenset({str}))
    if not all(ids) or max(map(len, ids)) > MAX_NAME_LENGTH:
        raise BadMessage(f"'request_id' values must be non-empty strings of at most "
                         f"{MAX_NAME_LENGTH} characters")
    return ids


def _required_column(doc: Mapping[str, Any], field: str, n: int,
                     allowed: frozenset[type]) -> list[Any]:
    column = _column(doc, field, n)
    if column is None:
        raise BadMessage(f"batch lacks required column {field!r:.80}")
    if not set(map(type, column)) <= allowed:
        raise BadMessage(f"column {field!r:.80} holds values of an unsupported type")
    return column


def _column(doc: Mapping[str, Any], field: str, n: int) -> list[Any] | None:
    column = doc.get(field)
    if column is None:
        return None
    if not isinstance(column, list) or len(column) != n:
        raise BadMessage(f"column {field!r:.80} must be a list of {n} values")
    return column


def _scalar(value: Any, field: str) -> Any:
    if value is None or type(value) in _NUMBER_TYPES or isinstance(value, str):
        return value
    raise BadMessage(f"{field!r} must be a number, a string or null")
