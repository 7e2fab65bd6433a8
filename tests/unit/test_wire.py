"""Decoding of both wire forms, and every kind of bad input the worker must survive."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models.events.wire import MIN_EVENT_TIME_MS, BadMessage, decode

T0 = 1_764_230_400_000


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


def dumps(doc: object) -> bytes:
    return orjson.dumps(doc)


def test_single_prediction_decodes_to_one_row_columns() -> None:
    block = decode(b"fraud", dumps(prediction()))
    assert (block.kind, block.model, block.version, len(block)) == ("prediction", "fraud", "v1", 1)
    # The model's outputs and its service's measures are watched like features, under
    # reserved names.
    assert block.features == {"amount": [12.5], "country": ["DE"], "age": [None],
                              "output.score": [0.9], "output.prediction": ["fraud"],
                              "service.latency_ms": [3.5], "service.status": ["ok"]}
    assert block.feature_kinds == {"amount": "numeric", "country": "categorical",
                                   "age": "missing", "output.score": "numeric",
                                   "output.prediction": "categorical",
                                   "service.latency_ms": "numeric",
                                   "service.status": "categorical"}
    assert block.probabilities == {"fraud": [0.9], "ok": [0.1]}
    assert block.score == [0.9] and block.latency_ms == [3.5] and block.status == ["ok"]


def test_batch_envelope_keeps_columns_as_sent() -> None:
    block = decode(b"fraud", dumps(envelope(4)))
    assert len(block) == 4
    assert block.event_time == [T0, T0 + 1, T0 + 2, T0 + 3]
    assert block.features["amount"] == [0.0, 1.0, 2.0, 3.0]
    assert block.request_id == ["r0", "r1", "r2", "r3"]


def test_labels_in_both_forms() -> None:
    single = decode(b"m", dumps({"type": "label", "model": "m", "request_id": "r",
                                 "event_time": T0, "label": 1}))
    batch = decode(b"m", dumps({"type": "label_batch", "model": "m", "request_id": ["a", "b"],
                                "event_time": [T0, T0], "label": ["x", "y"]}))
    assert (single.kind, single.label) == ("label", [1])
    assert (batch.kind, batch.label, batch.request_id) == ("label", ["x", "y"], ["a", "b"])


def inputs(features: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in features.items() if not k.startswith(("output.", "service."))}


def test_features_may_be_null_or_absent() -> None:
    assert inputs(decode(b"fraud", dumps(prediction(features=None))).features) == {}
    assert inputs(decode(b"fraud", dumps(envelope(2, features=None))).features) == {}


def test_feature_names_for_outputs_are_reserved() -> None:
    with pytest.raises(BadMessage, match="reserved"):
        decode(b"fraud", dumps(prediction(features={"output.score": 1.0})))
    with pytest.raises(BadMessage, match="reserved"):
        decode(b"fraud", dumps(envelope(2, features={"output.x": [1.0, 2.0]})))


def test_watermark_needs_no_key() -> None:
    block = decode(None, dumps({"type": "watermark", "event_time": T0}))
    assert (block.kind, block.event_time) == ("watermark", [T0])


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"fraud", b"{not json", "not valid JSON"),
    (b"fraud", b'{"type":"prediction","score":NaN}', "not valid JSON"),
    (b"fraud", b'{"type":"prediction","score":1e999}', "not valid JSON"),
    (b"fraud", b"[1, 2]", "expected a JSON object"),
    (b"fraud", None, "no value"),
    (b"fraud", dumps({"type": "telemetry"}), "unknown type 'telemetry'"),
    (b"fraud", dumps({"model": "fraud"}), "unknown type None"),
    (b"fraud", dumps(prediction(version=None)), "lacks required field 'version'"),
    (b"fraud", dumps(prediction(event_time="2026-11-27")), "must be an integer"),
    (b"fraud", dumps(prediction(event_time=1_764_230_400)), "out of range"),
    (b"fraud", dumps(prediction(event_time=1.5e12)), "must be an integer"),
    (b"fraud", dumps(prediction(features=[1, 2])), "'features' must be an object"),
    (b"other", dumps(prediction()), "key 'other' must be the model name 'fraud'"),
    (None, dumps(prediction()), "key None must be the model name"),
    (b"fraud", dumps(envelope(3, event_time=[T0, T0])), "must be a list of 2 values"),
    (b"fraud", dumps(envelope(2, event_time=[])), "non-empty list"),
    (b"fraud", dumps(envelope(2, request_id=None)), "required column 'request_id'"),
    (b"fraud", dumps(envelope(2, request_id=["a", None])), "column 'request_id'"),
    (b"fraud", dumps(envelope(2, request_id=["a", ""])), "non-empty strings"),
    (b"m", dumps({"type": "label_batch", "model": "m", "request_id": ["a"],
                  "event_time": [T0], "label": [None]}), "column 'label'"),
])
def test_bad_input_is_rejected_with_a_reason(key: bytes | None, value: bytes | None,
                                              reason: str) -> None:
    with pytest.raises(BadMessage, match=None) as info:
        decode(key, value)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("value", "features", "invalid"), [
    # A value of the wrong type is dropped and its position kept; the message is not lost.
    (prediction(features={"x": [1], "y": 2.0}), {"x": [None], "y": [2.0]}, {"x": [0]}),
    (prediction(score="high"), {"output.prediction": ["fraud"]}, {"output.score": [0]}),
    (envelope(3, features={"x": [1.0, "a", 2.0]}), {"x": [1.0, None, 2.0]}, {"x": [1]}),
    (envelope(3, features={"c": ["a", 7, "b"]}), {"c": ["a", None, "b"]}, {"c": [1]}),
    (envelope(2, features={"x": [{"v": 1}, [2]]}), {"x": [None, None]}, {"x": [0, 1]}),
    (envelope(2, score=["a", "b"]), {}, {"output.score": [0, 1]}),
    (envelope(2, score=[True, 0.5]), {"output.score": [None, 0.5]}, {"output.score": [0]}),
    (envelope(2, latency_ms=[3.0, "slow"]), {"service.latency_ms": [3.0, None]},
     {"service.latency_ms": [1]}),
    (envelope(2, status=["ok", 500]), {"service.status": ["ok", None]}, {"service.status": [1]}),
    (envelope(2, prediction=[1, [1]]), {"output.prediction": [1, None]},
     {"output.prediction": [1]}),
])
def test_a_value_of_the_wrong_type_is_dropped_and_counted(
        value: dict[str, Any], features: dict[str, list[Any]],
        invalid: dict[str, list[int]]) -> None:
    block = decode(b"fraud", dumps(value))
    assert block.invalid == invalid
    for name, column in features.items():
        assert block.features[name] == column
    assert len(block.request_id) == len(block)


def test_oversize_message_is_rejected_before_parsing() -> None:
    with pytest.raises(BadMessage, match="over the 100-byte limit"):
        decode(b"fraud", dumps(envelope(20)), max_bytes=100)


values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-(2**53), 2**53))
names = st.text(min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.integers(MIN_EVENT_TIME_MS, MIN_EVENT_TIME_MS + 10**9), min_size=n, max_size=n),
    st.dictionaries(names, st.lists(values, min_size=n, max_size=n), max_size=5))))
def test_envelope_round_trip_keeps_every_value(case: tuple[int, list[int], dict[str, list[Any]]]
                                               ) -> None:
    n, times, features = case
    doc = envelope(n, event_time=times, features=features)
    block = decode(b"fraud", dumps(doc))
    assert block.event_time == times
    assert inputs(block.features) == orjson.loads(dumps(features))
    assert len(block) == n
