"""Fuzzing every decoder of what the worker reads: bad input never stops a worker.

A decoder either returns a value equal to what was sent, or raises its one documented
error with a one-line reason: :class:`BadMessage` on the predictions, labels and telemetry
topics, :class:`ValueError` for reference profiles and alerts. Never another exception,
never a hang, never a value the message did not carry. Messages come in four kinds: what
the project's own encoders write (which must decode exactly), valid documents with parts
deleted, replaced by junk or by raw JSON such as ``NaN`` spliced in, arbitrary and
truncated bytes, and messages over the size limit.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from driftline.models.alerting.alerts import Alert, alert_id
from driftline.models.drift.reference import (
    CategoricalReference,
    NumericReference,
    ReferenceProfile,
)
from driftline.models.events.records import LabelEvent, PredictionEvent
from driftline.models.events.wire import (
    MAX_EVENT_TIME_MS,
    MAX_NAME_LENGTH,
    MIN_EVENT_TIME_MS,
    BadMessage,
    EventBlock,
    decode,
)
from driftline.models.telemetry.sample import (
    HostMetrics,
    TelemetrySample,
    decode_telemetry,
)
from driftline.models.telemetry.windows import HostWatermark, decode_telemetry_message
from driftline.streams.publisher._buffer import EventBuffer
from driftline.streams.reference.profiles import ReferenceStore
from driftline.streams.settings import Settings

T = TypeVar("T")
T0 = 1_764_230_400_000
#: A reason is a line for the dead-letter topic and the log, never a copy of the message.
MAX_REASON = 600
#: Every message here is a few kilobytes: decoding one takes microseconds.
MAX_SECONDS = 2.0
FUZZ = settings(max_examples=120, deadline=None)
FEW = settings(max_examples=40, deadline=None)

SCHEMAS = {path.stem: json.loads(path.read_text("utf-8"))
           for path in (Path(__file__).parents[2] / "models/schemas").glob("*.json")}
REGISTRY = Registry().with_resources(
    (schema["$id"], DRAFT202012.create_resource(schema)) for schema in SCHEMAS.values())
VALIDATORS = {name: Draft202012Validator(schema, registry=REGISTRY)
              for name, schema in SCHEMAS.items()}


# --- the invariant ---------------------------------------------------------------------

def outcome(call: Callable[[], T], error: type[Exception] = BadMessage) -> T | None:
    """What ``call`` returns, or None if it raised ``error`` with a one-line reason; any
    other exception escapes and fails the test."""
    started = time.perf_counter()
    try:
        return call()
    except error as exc:
        reason = str(exc)
        assert reason.strip(), f"{type(exc).__name__} without a reason"
        assert "\n" not in reason and "\r" not in reason, reason
        assert len(reason) <= MAX_REASON, f"a {len(reason)}-character reason: {reason[:200]}"
        return None
    finally:
        assert time.perf_counter() - started < MAX_SECONDS


def same(decoded: Any, sent: Any) -> bool:
    """Whether a decoded document holds exactly the values sent (a decoder may read an
    integer into a float field, and an absent nullable field as null)."""
    if isinstance(decoded, dict):
        return isinstance(sent, dict) and all(same(v, sent.get(k)) for k, v in decoded.items())
    if isinstance(decoded, list | tuple):
        return (isinstance(sent, list) and len(sent) == len(decoded)
                and all(map(same, decoded, sent)))
    if type(decoded) is float and type(sent) is int:
        return decoded == float(sent)
    return type(decoded) is type(sent) and decoded == sent


# --- junk --------------------------------------------------------------------------------

chars = st.characters(exclude_categories=["Cs"])  # JSON text is valid Unicode
EDGES = [0, -1, 1, 2**53 + 1, 2**63 - 1, 2**64 - 1, -(2**63), 1e308, -1e308, 5e-324, -0.0,
         0.5, MIN_EVENT_TIME_MS - 1, MAX_EVENT_TIME_MS + 1, T0, float(T0), T0 // 1000,
         "", " ", "x" * (MAX_NAME_LENGTH + 1), "\x00", "a\nb", "é", "🦜" * 300, "\ufffd",
         "output.score", "service.x", "prediction", "label_batch", "watermark", "telemetry",
         "ok", "NaN"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(chars, max_size=10), st.sampled_from(EDGES))
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(chars, max_size=6), inner, max_size=4),
                    max_leaves=10)
#: JSON that orjson cannot write: non-standard numbers, out-of-range literals, a lone
#: surrogate, nesting past the parser's depth limit, a huge string.
RAW = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"18446744073709551616",
       b"-9223372036854775809", b"1" + b"0" * 40, b"1.5e12", b"1764230400000.0", b"-0",
       b"1E3", b'"\\ud800"', b'"\\u0000"', b"[" * 1100 + b"]" * 1100, b'"' + b"x" * 1000 + b'"']
_SLOT = "\x00raw\x00"


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON document."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        yield node, key
        if isinstance(value, dict | list):
            yield from _slots(value)


@st.composite
def mutated(draw: st.DrawFn, docs: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A valid document with one to three parts deleted, added, or replaced by junk
    values or raw JSON text."""
    doc = copy.deepcopy(draw(docs))
    raw: list[bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(doc))
        if not slots:
            doc[draw(st.text(chars, max_size=6))] = draw(junk)
            continue
        parent, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(("delete", "add", "junk", "junk", "raw")))
        if action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, list):
            parent.insert(key, draw(junk))  # a column one longer than the others
        elif action == "add":
            parent[draw(st.text(chars, max_size=6))] = draw(junk)
        elif action == "raw":
            parent[key] = _SLOT
            raw.append(draw(st.sampled_from(RAW)))
        else:
            parent[key] = draw(junk)
    value = orjson.dumps(doc)
    for text in raw:
        value = value.replace(orjson.dumps(_SLOT), text, 1)
    return value


@st.composite
def truncated(draw: st.DrawFn, values: st.SearchStrategy[bytes]) -> bytes:
    value = draw(values)
    return value[:draw(st.integers(0, max(0, len(value) - 1)))]


anything = st.one_of(st.binary(max_size=300), st.text(chars, max_size=100).map(str.encode),
                     junk.map(orjson.dumps))
keys = st.one_of(st.none(), st.binary(max_size=8), st.sampled_from([b"", b"\xff", b"fraud"]))


# --- the predictions and labels topics ---------------------------------------------------

names = st.text(chars, min_size=1, max_size=8) | st.sampled_from(
    ["x" * MAX_NAME_LENGTH, "\ufffd", "a\nb", "🦜" * MAX_NAME_LENGTH])
feature_names = names.filter(lambda name: not name.startswith(("output.", "service.")))
event_times = st.integers(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)
numbers = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False))
labels = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(chars, max_size=8))
single_predictions = st.fixed_dictionaries({
    "type": st.just("prediction"), "model": names, "version": names, "request_id": names,
    "event_time": event_times,
}, optional={
    "features": st.dictionaries(feature_names, numbers | st.text(chars, max_size=8),
                                max_size=5),
    "prediction": numbers | st.booleans() | st.text(chars, max_size=5),
    "score": numbers, "latency_ms": numbers, "status": st.none() | names,
    "probabilities": st.dictionaries(names, numbers, max_size=3),
})
single_labels = st.fixed_dictionaries({
    "type": st.just("label"), "model": names, "request_id": names, "event_time": event_times,
    "label": labels})
watermarks = st.fixed_dictionaries({"type": st.just("watermark"), "event_time": event_times},
                                   optional={"model": names})


@st.composite
def label_batches(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    return {"type": "label_batch", "model": draw(names),
            "request_id": draw(st.lists(names, min_size=n, max_size=n)),
            "event_time": draw(st.lists(event_times, min_size=n, max_size=n)),
            "label": draw(st.lists(labels, min_size=n, max_size=n))}


@st.composite
def prediction_batches(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=n, max_size=n))

    features = {name: column(numbers if draw(st.booleans()) else st.none() | names)
                for name in draw(st.sets(feature_names, max_size=4))}
    return {"type": "prediction_batch", "model": draw(names), "version": draw(names),
            "request_id": column(names), "event_time": column(event_times),
            "features": features, "prediction": column(numbers), "score": column(numbers),
            "probabilities": {c: column(numbers) for c in draw(st.sets(names, max_size=2))},
            "latency_ms": column(numbers), "status": column(st.none() | names)}


wire_docs = st.one_of(single_predictions, single_labels, watermarks, label_batches(),
                      prediction_batches())


def model_key(value: bytes) -> bytes | None:
    """The key a well-behaved producer sends with ``value``: its model, if it names one."""
    try:
        model = orjson.loads(value).get("model")
    except (orjson.JSONDecodeError, AttributeError):
        return b"fraud"
    return model.encode() if isinstance(model, str) else None


_NUMBERS = (int, float, bool, type(None))
_MEASURES = (int, float, type(None))
#: Where a value the block counts as invalid under a reserved name came from.
_OUTPUT_FIELDS = {"output.prediction": ("prediction", (*_NUMBERS, str)),
                  "output.score": ("score", _MEASURES),
                  "service.latency_ms": ("latency_ms", _MEASURES),
                  "service.status": ("status", (str, type(None)))}


def without_dropped(doc: dict[str, Any], block: EventBlock) -> dict[str, Any]:
    """``doc`` with each value the block dropped as invalid replaced by null; every dropped
    position held a value of a type its field or feature does not take."""
    if doc.get("type") not in ("prediction", "prediction_batch"):
        assert not block.invalid
        return doc
    doc = copy.deepcopy(doc)
    batch = doc["type"] == "prediction_batch"

    def drop(owner: dict[str, Any], field: str, fits: tuple[type, ...]) -> set[int]:
        if field not in owner:
            return set()
        values = owner[field] if batch else [owner[field]]
        bad = {i for i, v in enumerate(values) if type(v) not in fits}
        for i in bad:
            values[i] = None
        if not batch:
            owner[field] = values[0]
        return bad

    for name, positions in block.invalid.items():
        assert positions == sorted(set(positions)) and positions
        if name in _OUTPUT_FIELDS:
            field, fits = _OUTPUT_FIELDS[name]
            bad = drop(doc, field, fits)
            if name == "output.score":  # probabilities count under the score
                for c in doc.get("probabilities") or {}:
                    bad |= drop(doc["probabilities"], c, _MEASURES)
        else:
            kind = block.feature_kinds[name]
            fits = {"numeric": _NUMBERS, "categorical": (str, type(None)),
                    "missing": (type(None),)}[kind]
            bad = drop(doc["features"], name, fits)
        assert bad == set(positions), (name, positions, doc)
    return doc


def check_block(block: EventBlock, key: bytes | None, value: bytes) -> None:
    """An accepted message is one the JSON Schema accepts once the values the block drops
    as invalid are nulled, and the block holds its values."""
    doc = without_dropped(orjson.loads(value), block)
    assert VALIDATORS["message"].is_valid(doc), doc
    batch = doc["type"].endswith("_batch")
    assert block.kind == doc["type"].removesuffix("_batch")
    assert block.event_time == (doc["event_time"] if batch else [doc["event_time"]])
    assert all(type(t) is int for t in block.event_time)
    # A watermark's model may be absent or null (the schema allows both): every model.
    assert block.model == (doc.get("model") or "")
    assert not block.model or key == block.model.encode()
    if block.kind == "watermark":
        return
    def column(name: str, default: Any = None) -> Any:
        return doc.get(name) if batch else [doc.get(name, default)]

    n = len(block)
    assert block.request_id == column("request_id")
    assert block.label == (column("label") if block.kind == "label" else None)
    if block.kind == "prediction":
        assert block.version == doc["version"]
        assert (block.score, block.latency_ms, block.prediction, block.status) == (
            column("score"), column("latency_ms"), column("prediction"), column("status", "ok"))
        probabilities = doc.get("probabilities")
        assert block.probabilities == (probabilities if batch or probabilities is None else
                                       {c: [p] for c, p in probabilities.items()})
        sent = doc.get("features") or {}
        inputs = {k: v for k, v in block.features.items()
                  if not k.startswith(("output.", "service."))}
        assert inputs == (sent if batch else {k: [v] for k, v in sent.items()})
        for name, values in block.features.items():
            assert len(values) == n
            kinds = {type(v) for v in values} - {type(None)}
            expected = ("missing" if not kinds else "categorical" if kinds == {str}
                        else "numeric")
            assert block.feature_kinds[name] == expected, (name, values)


def decoded_message(key: bytes | None, value: bytes | None,
                    max_bytes: int = 8 * 1024 * 1024) -> None:
    block = outcome(lambda: decode(key, value, max_bytes))
    if block is not None:
        assert value is not None
        check_block(block, key, value)


@FUZZ
@given(wire_docs)
def test_valid_messages_decode_to_exactly_what_was_sent(doc: dict[str, Any]) -> None:
    value = orjson.dumps(doc)
    block = decode(model_key(value), value)
    check_block(block, model_key(value), value)


@FUZZ
@given(mutated(wire_docs), st.booleans(), keys)
@example(b'{"type":"prediction","model":"\\ufffd","version":"v","request_id":"r",'
         b'"event_time":1764230400000}', False, b"\xff")
@example(b'{"type":"prediction","model":"m","version":"v","request_id":"r",'
         b'"event_time":1764230400000,"score":"' + b"x" * 1000 + b'"}', True, None)
@example(b'{"type":"prediction_batch","model":"m","version":"v","request_id":["r"],'
         b'"event_time":[1764230400000],"features":{"' + b"x" * 1000 + b'":[]}}', True, None)
def test_broken_messages_are_rejected_with_a_reason_or_decode_exactly(
        value: bytes, keyed: bool, key: bytes | None) -> None:
    decoded_message(model_key(value) if keyed else key, value)


@FUZZ
@given(st.one_of(anything, truncated(wire_docs.map(orjson.dumps))), keys)
def test_arbitrary_and_truncated_bytes_are_rejected_with_a_reason(value: bytes,
                                                                  key: bytes | None) -> None:
    decoded_message(key, value)
    decoded_message(model_key(value), value)


@FEW
@given(wire_docs.map(orjson.dumps), st.data())
def test_messages_over_the_limit_are_rejected_naming_size_and_limit(value: bytes,
                                                                    data: st.DataObject) -> None:
    limit = data.draw(st.integers(0, len(value) - 1))
    for message in (value, b"[" * len(value)):  # the size is checked before parsing
        with pytest.raises(BadMessage) as info:
            decode(model_key(value), message, limit)
        assert f"{len(value)} bytes" in str(info.value) and f"{limit}-byte" in str(info.value)
    check_block(decode(model_key(value), value, len(value)), model_key(value), value)


# --- what the project's encoders write ---------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
published_numbers = st.none() | st.integers(-(2**63), 2**64 - 1) | finite
#: The publisher takes printable names; the wire format up to MAX_NAME_LENGTH characters.
published_names = st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1,
                          max_size=MAX_NAME_LENGTH)


@st.composite
def published_predictions(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of one model and version that keep each feature to one kind, as the wire
    format asks; NaN and infinities included (the publisher sends them as null)."""
    numeric = draw(st.dictionaries(feature_names, st.booleans(), max_size=4))
    values = {True: published_numbers | st.just(float("nan")),
              False: st.none() | st.text(chars, max_size=6)}
    event = st.fixed_dictionaries({
        "request_id": published_names, "event_time_ms": event_times,
        "features": st.fixed_dictionaries({n: values[kind] for n, kind in numeric.items()}),
        "score": published_numbers | st.just(float("inf")), "latency_ms": published_numbers,
        "prediction": st.none() | st.integers(0, 3), "status": st.sampled_from(["ok", "error"]),
    })
    return draw(st.lists(event, min_size=1, max_size=5))


def nulled(value: Any) -> Any:
    return None if isinstance(value, float) and value - value != 0.0 else value


@FEW
@given(published_names, published_names, published_predictions())
def test_what_the_publisher_sends_decodes_to_what_was_logged(
        model: str, version: str, events: list[dict[str, Any]]) -> None:
    buffer = EventBuffer(max_batch_events=100, linger_ms=0, max_buffered_events=1000,
                         max_envelope_bytes=10**6)
    for event in events:
        assert buffer.add_prediction(model, version, **event)
    (envelope,) = buffer.drain(force=True)
    block = decode(envelope.key, envelope.value)
    assert block.request_id == [e["request_id"] for e in events]
    assert block.event_time == [e["event_time_ms"] for e in events]
    assert block.score == [nulled(e["score"]) for e in events] or block.score is None
    for name in events[0]["features"]:
        assert block.features[name] == [nulled(e["features"][name]) for e in events]


@FEW
@given(published_names, st.lists(st.tuples(published_names, event_times, labels), min_size=1,
                                 max_size=5))
def test_what_the_publisher_sends_as_labels_decodes_to_what_was_logged(
        model: str, events: list[tuple[str, int, Any]]) -> None:
    buffer = EventBuffer(max_batch_events=100, linger_ms=0, max_buffered_events=1000,
                         max_envelope_bytes=10**6)
    for request_id, event_time, label in events:
        assert buffer.add_label(model, request_id, label, event_time_ms=event_time)
    (envelope,) = buffer.drain(force=True)
    block = decode(envelope.key, envelope.value)
    assert (block.kind, block.model) == ("label", model)
    assert block.request_id == [e[0] for e in events]
    assert block.event_time == [e[1] for e in events]
    assert same(block.label, [int(e[2]) if isinstance(e[2], bool) else e[2] for e in events])


@FEW
@given(published_names, published_names, published_names, event_times,
       st.dictionaries(feature_names, st.none() | finite | st.text(chars, max_size=6),
                       max_size=4), st.none() | finite, labels)
def test_faust_records_decode_to_their_fields(model: str, version: str, request_id: str,
                                              event_time: int, features: dict[str, Any],
                                              score: float | None, label: Any) -> None:
    event = PredictionEvent(model=model, version=version, request_id=request_id,
                            features=features, score=score, event_time=event_time)
    block = decode(model.encode(), event.dumps())
    assert (block.model, block.version, block.request_id, block.event_time) == (
        model, version, [request_id], [event_time])
    assert {k: v for k, v in block.features.items()
            if not k.startswith(("output.", "service."))} == {k: [v] for k, v in features.items()}
    assert block.score == [score]
    labelled = decode(model.encode(), LabelEvent(model=model, request_id=request_id,
                                                 label=label, event_time=event_time).dumps())
    assert same(labelled.label, [label])


# --- the telemetry topic -----------------------------------------------------------------

#: Readings by field name where the type alone does not say what is valid.
TELEMETRY_FIELDS = {"event_time": event_times, "host": names, "models": names,
                    "index": st.integers(0, 2**16 - 1), "xid_errors": st.integers(0, 2**32 - 1)}


def readings(hint: Any, field: str = "") -> st.SearchStrategy[Any]:
    """Valid values of a telemetry field, from its type."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = (arg for arg in get_args(hint) if arg is not type(None))
        return st.none() | readings(inner, field)
    if origin is Literal:
        return st.sampled_from(get_args(hint))
    if origin is list:
        unique = (lambda gpu: gpu.index) if field == "gpus" else None
        return st.lists(readings(get_args(hint)[0], field), max_size=3, unique_by=unique)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = get_type_hints(hint)
        return st.builds(hint, **{f.name: readings(hints[f.name], f.name)
                                  for f in dataclasses.fields(hint)})
    if field in TELEMETRY_FIELDS:
        return TELEMETRY_FIELDS[field]
    return {int: st.integers(0, 2**64 - 1), float: st.floats(0, 1e300),
            str: st.text(chars, max_size=8)}[hint]


samples = readings(TelemetrySample)
SAMPLE = TelemetrySample(
    host="gpu-07", event_time=T0, interval_seconds=5.0, models=["fraud"], gpu_source=None,
    gpu_error=None, gpus=[], processes=[], dropped=0,
    host_metrics=HostMetrics(cpu_percent=1.0, cpu_percent_per_core=[], load_1m=None,
                             load_5m=None, load_15m=None, memory_total_bytes=2,
                             memory_used_bytes=1, memory_available_bytes=1,
                             memory_percent=50.0, swap_total_bytes=0, swap_used_bytes=0,
                             swap_percent=0.0))
host_watermarks = st.builds(HostWatermark, names, event_times)
telemetry_docs = st.one_of(samples.map(lambda s: orjson.loads(s.to_json())),
                           host_watermarks.map(lambda w: orjson.loads(w.to_json())))


def host_key(value: bytes) -> bytes | None:
    try:
        host = orjson.loads(value).get("host")
    except (orjson.JSONDecodeError, AttributeError):
        return b"gpu-07"
    return host.encode() if isinstance(host, str) else None


def decoded_telemetry(key: bytes | None, value: bytes) -> None:
    """Both telemetry decoders keep the invariant, and what they accept is what was sent."""
    sample = outcome(lambda: decode_telemetry(key, value))
    message = outcome(lambda: decode_telemetry_message(key, value))
    doc = orjson.loads(value) if sample or message else None
    if sample is not None:
        assert VALIDATORS["telemetry"].is_valid(doc), doc
        assert same(orjson.loads(sample.to_json()), doc) and key == sample.key
    if isinstance(message, TelemetrySample):
        assert message == sample
    elif isinstance(message, HostWatermark):
        assert doc == {**doc, "type": "watermark", "host": message.host,
                       "event_time": message.event_time}
        assert key == message.host.encode() and type(doc["event_time"]) is int


@FUZZ
@given(samples)
def test_telemetry_samples_decode_to_exactly_what_the_agent_sent(sample: TelemetrySample
                                                                 ) -> None:
    assert decode_telemetry_message(sample.key, sample.to_json()) == sample


@FUZZ
@given(host_watermarks.filter(lambda w: len(w.to_json()) < 1024))
def test_host_watermarks_decode_to_exactly_what_the_worker_sent(watermark: HostWatermark
                                                                ) -> None:
    value = watermark.to_json()
    assert decode_telemetry_message(watermark.host.encode(), value) == watermark


def test_a_watermark_of_a_long_host_name_decodes() -> None:
    watermark = HostWatermark("🦜" * MAX_NAME_LENGTH, T0)
    assert decode_telemetry_message(watermark.host.encode(), watermark.to_json()) == watermark


def test_a_short_watermark_over_the_limit_is_rejected() -> None:
    with pytest.raises(BadMessage, match="over the 10-byte limit"):
        decode_telemetry_message(b"h", HostWatermark("h", T0).to_json(), 10)


@FUZZ
@given(mutated(telemetry_docs), st.booleans(), keys)
@example(dataclasses.replace(SAMPLE, host="\ufffd").to_json(), False, b"\xff")
@example(dataclasses.replace(SAMPLE, host="\x00" * MAX_NAME_LENGTH).to_json(), False, b"h")
def test_broken_telemetry_is_rejected_with_a_reason_or_decodes_exactly(
        value: bytes, keyed: bool, key: bytes | None) -> None:
    decoded_telemetry(host_key(value) if keyed else key, value)


@FUZZ
@given(st.one_of(anything, truncated(telemetry_docs.map(orjson.dumps))), keys)
def test_arbitrary_and_truncated_telemetry_is_rejected_with_a_reason(
        value: bytes, key: bytes | None) -> None:
    decoded_telemetry(key, value)
    decoded_telemetry(host_key(value), value)


@FEW
@given(telemetry_docs.map(orjson.dumps), st.data())
def test_telemetry_over_the_limit_is_rejected_naming_size_and_limit(
        value: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.integers(0, len(value) - 1))
    for decoder in (decode_telemetry, decode_telemetry_message):
        for message in (value, b"[" * len(value)):  # the size is checked before parsing
            with pytest.raises(BadMessage) as info:
                decoder(host_key(value), message, limit)
            assert f"{len(value)} bytes" in str(info.value)
            assert f"{limit}-byte" in str(info.value)


# --- reference profiles, read by every worker from the references topic ------------------

counts = st.integers(0, 2**63 - 1)


def edges(draw: st.DrawFn) -> tuple[float, ...]:
    return tuple(sorted(draw(st.lists(finite, min_size=2, max_size=6, unique=True))))


def histogram(draw: st.DrawFn, bins: int) -> tuple[int, ...]:
    return tuple(draw(st.lists(counts, min_size=bins, max_size=bins)))


@st.composite
def numeric_references(draw: st.DrawFn) -> NumericReference:
    coarse, fine = edges(draw), edges(draw)
    return NumericReference(
        edges=coarse, counts=histogram(draw, len(coarse) + 1), fine_edges=fine,
        fine_counts=histogram(draw, len(fine) + 1), count=draw(counts),
        missing_count=draw(counts), mean=draw(finite), std=draw(finite), min=draw(finite),
        max=draw(finite), quantiles=tuple(draw(st.lists(finite, min_size=7, max_size=7))))


@st.composite
def categorical_references(draw: st.DrawFn) -> CategoricalReference:
    categories = tuple(draw(st.lists(st.text(chars, max_size=8), max_size=5, unique=True)))
    return CategoricalReference(categories=categories, counts=histogram(draw, len(categories)),
                                other_count=draw(counts), count=draw(counts),
                                missing_count=draw(counts))


profiles = st.builds(
    ReferenceProfile, model=names, version=names, source=st.sampled_from(["training", "baseline"]),
    created_at_ms=event_times,
    features=st.dictionaries(st.text(chars, max_size=8),
                             numeric_references() | categorical_references(), max_size=3))
profile_docs = profiles.map(lambda p: orjson.loads(p.to_json()))


def store() -> ReferenceStore:
    return ReferenceStore(Settings())


def decoded_profile(value: bytes) -> None:
    """Rejected with a one-line ValueError, or read as sent; and the store carries on."""
    profile = outcome(lambda: ReferenceProfile.from_json(value), ValueError)
    if profile is not None:
        sent = orjson.loads(value)
        for name, feature in sent["features"].items():  # a feature sent without its kind
            feature.setdefault("kind", profile.features[name].kind)  # is read by its fields
        assert same(orjson.loads(profile.to_json()), sent)
        for feature in profile.features.values():
            for name, hint in get_type_hints(type(feature)).items():
                assert (get_origin(hint) is not tuple
                        or type(getattr(feature, name)) is tuple), (name, feature)
    live = store()
    live._apply(profile.key if profile else b"m/v", value, 0)
    assert len(live) <= 1


@FUZZ
@given(profiles)
def test_reference_profiles_read_back_exactly(profile: ReferenceProfile) -> None:
    assert ReferenceProfile.from_json(profile.to_json()) == profile
    live = store()
    live._apply(profile.key, profile.to_json(), 0)
    assert live.get(profile.model, profile.version) == profile


@FUZZ
@given(st.one_of(mutated(profile_docs), anything, truncated(profile_docs.map(orjson.dumps))))
@example(b'{"model":"m","version":"v","source":"training","created_at_ms":1,"features":5}')
@example(b'{"model":"m","version":"v","source":"training","created_at_ms":1,'
         b'"features":{"x":{"kind":"categorical","categories":["a"],"counts":["1"],'
         b'"other_count":0,"count":1,"missing_count":0}}}')
@example(b'{"model":"m","version":"v","source":"training","created_at_ms":1,'
         b'"features":{"x":{"edges":["a","b"],"counts":[0,1,0],"fine_edges":["a","b"],'
         b'"fine_counts":[0,1,0],"count":1,"missing_count":0,"mean":0,"std":0,"min":0,'
         b'"max":0,"quantiles":[]}}}')
def test_broken_reference_profiles_are_skipped_with_a_reason(value: bytes) -> None:
    decoded_profile(value)


# --- alerts, read by whatever consumes the alerts topic ----------------------------------

finite_scores = st.floats(allow_nan=False, allow_infinity=False)
alerts = st.builds(
    lambda key, first, *rest: Alert(alert_id(key, first), key, *rest[:-4], first, *rest[-4:]),
    st.text(chars, min_size=1, max_size=20), st.integers(0, 2**63 - 1),
    st.sampled_from(["open", "escalated", "resolved"]), st.sampled_from(["warning", "critical"]),
    names, names, names, names, finite_scores, finite_scores, st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.text(chars, max_size=40))


def decoded_alert(value: bytes) -> None:
    alert = outcome(lambda: Alert.from_json(value), ValueError)
    if alert is not None:
        sent = orjson.loads(value)
        assert sent.keys() == orjson.loads(alert.to_json()).keys()
        assert same(orjson.loads(alert.to_json()), sent)


@FUZZ
@given(alerts)
def test_alerts_read_back_exactly(alert: Alert) -> None:
    assert Alert.from_json(alert.to_json()) == alert


@FUZZ
@given(st.one_of(mutated(alerts.map(lambda a: orjson.loads(a.to_json()))), anything,
                 truncated(alerts.map(Alert.to_json))))
@example(Alert(alert_id("k", 0), "k", "open", "warning", "m", "v", "f", "psi", 0.5, 0.2, 0, 1,
               0, 1, "s").to_json().replace(b'"value":0.5', b'"value":"' + b"x" * 1000 + b'"'))
def test_broken_alerts_are_rejected_with_a_reason(value: bytes) -> None:
    decoded_alert(value)
