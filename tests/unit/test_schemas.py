"""The JSON Schemas in models/schemas/ describe exactly what ``driftline.models.events.wire.decode``
accepts.

The decoder is the source of truth. Beyond the schemas it checks only what JSON Schema
cannot express, each said in the schemas' descriptions: the Kafka key is the model name,
batch columns are as long as ``event_time``, event times are integer literals (JSON Schema
sees ``1.5e12`` as the integer 1500000000000), and the message size limit.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from driftline.models.events import wire
from driftline.models.events.wire import (
    MAX_EVENT_TIME_MS,
    MAX_NAME_LENGTH,
    MIN_EVENT_TIME_MS,
    BadMessage,
    decode,
)

SCHEMA_DIR = Path(str(resources.files("driftline.models") / "schemas"))
BASE = "https://driftline.dev/schemas/"
WIRE_TYPES = ("prediction", "label", "prediction_batch", "label_batch", "outcome", "outcome_batch",
              "watermark")
SCHEMAS: dict[str, dict[str, Any]] = {
    name: json.loads((SCHEMA_DIR / f"{name}.json").read_text("utf-8"))
    for name in (*WIRE_TYPES, "message")
}
REGISTRY = Registry().with_resources(
    (schema["$id"], DRAFT202012.create_resource(schema)) for schema in SCHEMAS.values())
VALIDATORS = {name: Draft202012Validator(schema, registry=REGISTRY)
              for name, schema in SCHEMAS.items()}
EXAMPLES = [pytest.param(name, example, id=f"{name}-{i}")
            for name, schema in SCHEMAS.items() for i, example in enumerate(schema["examples"])]

T0 = 1_764_230_400_000


def key_for(doc: Any) -> bytes | None:
    """The key a well-behaved producer uses: the model name; none for a partition watermark."""
    if not isinstance(doc, dict):
        return None
    model = doc.get("model")
    if doc.get("type") == "watermark" and not model:
        return None
    return model.encode() if isinstance(model, str) else b"fraud"


def decoder_accepts(doc: Any) -> bool:
    """Whether the decoder takes ``doc`` as it is: no dead letter, no value dropped."""
    try:
        block = decode(key_for(doc), orjson.dumps(doc))
    except BadMessage:
        return False
    return not block.invalid


def schema_accepts(doc: Any, name: str = "message") -> bool:
    return VALIDATORS[name].is_valid(orjson.loads(orjson.dumps(doc)))


# --- the schemas themselves ------------------------------------------------------------

@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_a_valid_2020_12_schema_with_its_documentation(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{BASE}{name}.json"
    assert schema["title"] and schema["description"] and schema["examples"]


def test_message_is_one_of_exactly_the_types_the_decoder_knows() -> None:
    assert set(WIRE_TYPES) == set(wire._DECODERS)
    refs = {branch["$ref"] for branch in SCHEMAS["message"]["oneOf"]}
    assert refs == {f"{BASE}{name}.json" for name in WIRE_TYPES}
    for name in WIRE_TYPES:
        assert SCHEMAS[name]["properties"]["type"] == {"const": name}


@pytest.mark.parametrize("name", WIRE_TYPES)
def test_limits_match_the_decoder_constants(name: str) -> None:
    defs = SCHEMAS[name]["$defs"]
    assert (defs["event_time"]["minimum"], defs["event_time"]["maximum"]) == (
        MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)
    if "name" in defs:
        assert (defs["name"]["minLength"], defs["name"]["maxLength"]) == (1, MAX_NAME_LENGTH)


@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_examples_validate_and_decode(name: str, example: dict[str, Any]) -> None:
    VALIDATORS[name].validate(example)
    VALIDATORS["message"].validate(example)
    block = decode(key_for(example), orjson.dumps(example))
    assert block.kind == example["type"].removesuffix("_batch")


# --- bad input: rejected by both -------------------------------------------------------

def prediction(**overrides: Any) -> dict[str, Any]:
    event = {"type": "prediction", "model": "fraud", "version": "v1", "request_id": "r1",
             "event_time": T0, "features": {"amount": 12.5, "country": "DE", "age": None},
             "prediction": "fraud", "score": 0.9, "probabilities": {"fraud": 0.9, "ok": 0.1},
             "latency_ms": 3.5, "status": "ok"}
    event.update(overrides)
    return event


def envelope(n: int = 3, **overrides: Any) -> dict[str, Any]:
    doc = {"type": "prediction_batch", "model": "fraud", "version": "v1",
           "request_id": [f"r{i}" for i in range(n)], "event_time": [T0 + i for i in range(n)],
           "features": {"amount": [1.0 * i for i in range(n)], "country": ["DE"] * n},
           "score": [0.5] * n}
    doc.update(overrides)
    return doc


LABEL = {"type": "label", "model": "fraud", "request_id": "r1", "event_time": T0, "label": 1}

# The bad inputs of test_wire.py that are JSON objects (or arrays) and that JSON Schema can
# see, plus a few more of the same kinds.
BAD = {
    "array": [1, 2],
    "unknown type": {"type": "telemetry"},
    "no type": {"model": "fraud"},
    "no version": prediction(version=None),
    "event_time as a date": prediction(event_time="2026-11-27"),
    "event_time in seconds": prediction(event_time=1_764_230_400),
    "event_time after 2200": prediction(event_time=MAX_EVENT_TIME_MS + 1),
    "event_time as a boolean": prediction(event_time=True),
    "features as a list": prediction(features=[1, 2]),
    "feature name empty": prediction(features={"": 1}),
    "model empty": prediction(model=""),
    "model too long": prediction(model="m" * (MAX_NAME_LENGTH + 1)),
    "label null": {**LABEL, "label": None},
    "batch event_time empty": envelope(2, event_time=[]),
    "batch without request_id": envelope(2, request_id=None),
    "batch probabilities column null": envelope(1, probabilities={"ok": None}),
    "outcomes empty": {**LABEL, "type": "outcome", "outcomes": {}},
    "outcome name empty": {**LABEL, "type": "outcome", "outcomes": {"": 1}},
}


@pytest.mark.parametrize("doc", BAD.values(), ids=BAD.keys())
def test_bad_input_is_rejected_by_schema_and_decoder(doc: Any) -> None:
    assert not schema_accepts(doc)
    with pytest.raises(BadMessage):
        decode(b"fraud", orjson.dumps(doc))


# Values the schema refuses that the decoder drops one by one, counted as invalid in their
# window, keeping the rest of the message (test_decoder_fuzz.py checks what is kept).
DROPPED = {
    "feature value a list": prediction(features={"x": [1]}),
    "score as text": prediction(score="high"),
    "score as a boolean": prediction(score=True),
    "batch feature of two kinds": envelope(2, features={"x": [1.0, "a"]}),
    "batch score as text": envelope(2, score=["a", "b"]),
    "outcome as text": {**LABEL, "type": "outcome", "outcomes": {"revenue": "12.5"}},
}


@pytest.mark.parametrize("doc", DROPPED.values(), ids=DROPPED.keys())
def test_a_value_the_schema_refuses_is_dropped_not_the_message(doc: dict[str, Any]) -> None:
    assert not schema_accepts(doc)
    block = decode(b"fraud", orjson.dumps(doc))
    assert block.invalid and len(block) == len(block.request_id)


# What only the decoder can check, as the schema descriptions say.
DECODER_ONLY = {
    "column shorter than event_time": envelope(3, event_time=[T0, T0]),
    "event_time as an integral float": prediction(event_time=1.5e12),
    "batch event_time as an integral float": envelope(1, event_time=[float(T0)]),
}


@pytest.mark.parametrize("doc", DECODER_ONLY.values(), ids=DECODER_ONLY.keys())
def test_what_json_schema_cannot_express(doc: dict[str, Any]) -> None:
    assert schema_accepts(doc)
    assert not decoder_accepts(doc)


# --- every field, one value at a time: schema and decoder agree ----------------------

LABEL_BATCH = {"type": "label_batch", "model": "fraud", "request_id": ["r1", "r2"],
               "event_time": [T0, T0], "label": [1, 0]}
VALID = {"prediction": prediction(), "prediction_batch": envelope(2, prediction=[1, 0],
                                                                  latency_ms=[1, 2]),
         "label": LABEL, "label_batch": LABEL_BATCH,
         "outcome": {"type": "outcome", "model": "fraud", "request_id": "r1", "event_time": T0,
                     "outcomes": {"converted": True, "revenue": 12.5}},
         "outcome_batch": {"type": "outcome_batch", "model": "fraud", "request_id": ["r1", "r2"],
                           "event_time": [T0, T0], "outcomes": {"revenue": [12.5, None]}},
         "watermark": {"type": "watermark", "event_time": T0}}
PROBES = [None, True, 0, 0.5, T0, float(T0), MAX_EVENT_TIME_MS + 1, "", "ok",
          "x" * MAX_NAME_LENGTH, "x" * (MAX_NAME_LENGTH + 1), [], {}]
CANDIDATES = [
    *PROBES,
    *([probe, probe] for probe in PROBES), [0.5, "ok"], [1], ["ok", "ok", "ok"],
    *({"x": probe} for probe in PROBES), {"": 0}, {"x" * MAX_NAME_LENGTH: 0},
    {"x" * (MAX_NAME_LENGTH + 1): 0}, *({"x": [probe, probe]} for probe in PROBES),
    {"x": [0.5, "ok"]}, {"x": [None, "ok"]}, {"x": [1]},
]


def within_json_schema_reach(doc: dict[str, Any]) -> bool:
    """False if ``doc`` breaks a rule of the decoder that JSON Schema cannot express."""
    times = doc["event_time"]
    if not isinstance(times, list):
        return type(times) is int
    cols = [doc.get(field) for field in ("request_id", "prediction", "score", "latency_ms",
                                         "status", "label")]
    if doc["type"] == "outcome_batch" and isinstance(doc.get("outcomes"), dict):
        cols += doc["outcomes"].values()
    if doc["type"] == "prediction_batch":
        cols += [*(doc.get("features") or {}).values(),
                 *(doc.get("probabilities") or {}).values()]
    return (all(type(t) is int for t in times)
            and all(c is None or len(c) == len(times) for c in cols))


@pytest.mark.parametrize("kind", WIRE_TYPES)
def test_schema_and_decoder_agree_on_every_field_and_value(kind: str) -> None:
    disagreements = []
    for field in [*SCHEMAS[kind]["properties"], "model", "extra"]:
        if field == "type":
            continue
        without = {name: value for name, value in VALID[kind].items() if name != field}
        for doc in (without, *({**without, field: value} for value in CANDIDATES)):
            expected = schema_accepts(doc, kind) and within_json_schema_reach(doc)
            if decoder_accepts(doc) != expected:
                disagreements.append(f"{field}={doc.get(field, '(absent)')!r}")
    assert not disagreements, "schema and decoder disagree on " + "; ".join(disagreements[:10])


# --- property test ---------------------------------------------------------------------

numeric_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                           st.floats(allow_nan=False, allow_infinity=False))
string_values = st.one_of(st.none(), st.text(max_size=12))
measure_values = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1),
                           st.floats(allow_nan=False, allow_infinity=False))
names = st.one_of(st.text(min_size=1, max_size=12),
                  st.text(min_size=MAX_NAME_LENGTH, max_size=MAX_NAME_LENGTH))


@st.composite
def prediction_batches(draw: st.DrawFn) -> dict[str, Any]:
    """Documents the prediction_batch schema accepts, with n values in every column and
    one kind (numeric or categorical) in each feature column."""
    n = draw(st.integers(1, 20))

    def column(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
        return st.lists(values, min_size=n, max_size=n)

    def optional(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.none(), column(values))

    feature_column = st.one_of(column(numeric_values), column(string_values))
    return draw(st.fixed_dictionaries({
        "type": st.just("prediction_batch"), "model": names, "version": names,
        "event_time": column(st.integers(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)),
        "request_id": column(names),
    }, optional={
        "features": st.dictionaries(names, feature_column, max_size=6),
        "prediction": optional(st.one_of(numeric_values, string_values)),
        "score": optional(measure_values),
        "probabilities": st.one_of(st.none(), st.dictionaries(st.text(max_size=5),
                                                              column(measure_values),
                                                              max_size=3)),
        "latency_ms": optional(measure_values),
        "status": optional(string_values),
    }))


@settings(max_examples=150, deadline=None)
@given(prediction_batches())
def test_batches_the_schema_accepts_with_equal_columns_decode(doc: dict[str, Any]) -> None:
    VALIDATORS["prediction_batch"].validate(orjson.loads(orjson.dumps(doc)))
    block = decode(doc["model"].encode(), orjson.dumps(doc))
    assert len(block) == len(doc["event_time"])
    inputs = {name for name in block.feature_kinds
              if not name.startswith(("output.", "service."))}
    assert inputs == set(doc.get("features") or {})
