"""The publisher's buffer and envelope encoding, without a broker."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.streams.publisher._buffer import Envelope, EventBuffer

T0 = 1_764_230_400_000


class Clock:
    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now


def make_buffer(**overrides: Any) -> EventBuffer:
    options: dict[str, Any] = dict(max_batch_events=1000, linger_ms=200,
                                   max_buffered_events=100_000, max_envelope_bytes=900_000)
    return EventBuffer(**{**options, **overrides})


def decoded(envelopes: list[Envelope]) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) for e in envelopes]


def test_prediction_envelope_layout() -> None:
    buffer = make_buffer()
    assert buffer.add_prediction(
        "fraud", "v3", "r-1", {"amount": 12.5, "country": "DE", "age": None},
        prediction="fraud", score=0.93, probabilities={"fraud": 0.93, "ok": 0.07},
        latency_ms=12.3, event_time_ms=T0)
    assert buffer.add_prediction("fraud", "v3", "r-2", {"country": "FR", "tenure": 3},
                                 prediction="ok", score=0.2, status="timeout",
                                 event_time_ms=T0 + 1)
    [envelope] = buffer.drain(force=True)
    assert (envelope.kind, envelope.key, envelope.events) == ("prediction", b"fraud", 2)
    assert orjson.loads(envelope.value) == {
        "type": "prediction_batch", "model": "fraud", "version": "v3",
        "request_id": ["r-1", "r-2"], "event_time": [T0, T0 + 1],
        "features": {"amount": [12.5, None], "country": ["DE", "FR"], "age": [None, None],
                     "tenure": [None, 3]},
        "prediction": ["fraud", "ok"], "score": [0.93, 0.2],
        "probabilities": {"fraud": [0.93, None], "ok": [0.07, None]},
        "latency_ms": [12.3, None], "status": ["ok", "timeout"]}


def test_optional_columns_are_omitted_when_absent_from_every_event() -> None:
    buffer = make_buffer()
    for i in range(3):
        assert buffer.add_prediction("fraud", "v3", f"r-{i}", {"amount": float(i)},
                                     event_time_ms=T0 + i)
    assert decoded(buffer.drain(force=True)) == [{
        "type": "prediction_batch", "model": "fraud", "version": "v3",
        "request_id": ["r-0", "r-1", "r-2"], "event_time": [T0, T0 + 1, T0 + 2],
        "features": {"amount": [0.0, 1.0, 2.0]}, "status": ["ok", "ok", "ok"]}]


def test_label_envelope_layout() -> None:
    buffer = make_buffer()
    assert buffer.add_label("fraud", "r-1", "fraud", event_time_ms=T0 + 60_000)
    assert buffer.add_label("fraud", "r-2", 0, event_time_ms=T0 + 61_000)
    [envelope] = buffer.drain(force=True)
    assert (envelope.kind, envelope.key) == ("label", b"fraud")
    assert orjson.loads(envelope.value) == {
        "type": "label_batch", "model": "fraud", "request_id": ["r-1", "r-2"],
        "event_time": [T0 + 60_000, T0 + 61_000], "label": ["fraud", 0]}


def test_default_event_time_is_now_in_utc_milliseconds() -> None:
    import time

    buffer = make_buffer()
    before = time.time_ns() // 1_000_000
    assert buffer.add_label("fraud", "r-1", 1)
    [doc] = decoded(buffer.drain(force=True))
    assert before <= doc["event_time"][0] <= time.time_ns() // 1_000_000


def test_nonfinite_values_become_null_and_are_counted() -> None:
    buffer = make_buffer()
    assert buffer.add_prediction(
        "fraud", "v3", "r-1", {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.0,
                               "e": np.float64("nan"), "f": np.float32("inf")},
        score=math.nan, latency_ms=math.inf, prediction=np.float32("nan"),
        probabilities={"x": math.nan, "y": 1.0}, event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["features"] == {"a": [None], "b": [None], "c": [None], "d": [1.0],
                               "e": [None], "f": [None]}
    assert doc["probabilities"] == {"x": [None], "y": [1.0]}
    assert "score" not in doc and "latency_ms" not in doc and "prediction" not in doc
    assert buffer.stats.nonfinite_values_nulled == 9


def test_numpy_scalars_and_bools_are_converted() -> None:
    buffer = make_buffer()
    features = {"f32": np.float32(2.5), "i64": np.int64(7), "s": np.str_("DE"),
                "b": np.bool_(True), "flag": False, "on": True, "u8": np.uint8(255)}
    assert buffer.add_prediction("fraud", "v3", "r-1", features, prediction=np.int64(1),
                                 score=np.float32(0.5), latency_ms=np.float64(3.25),
                                 probabilities={0: np.float64(0.25), np.int64(1): 0.75},
                                 event_time_ms=np.int64(T0))
    assert buffer.add_label("fraud", "r-1", np.int64(1), event_time_ms=np.int64(T0))
    prediction, label = decoded(buffer.drain(force=True))
    assert prediction["features"] == {"f32": [2.5], "i64": [7], "s": ["DE"], "b": [1],
                                      "flag": [0], "on": [1], "u8": [255]}
    assert (prediction["prediction"], prediction["score"], prediction["latency_ms"]) == (
        [1], [0.5], [3.25])
    assert prediction["probabilities"] == {"0": [0.25], "1": [0.75]}
    assert prediction["event_time"] == [T0]
    assert label == {"type": "label_batch", "model": "fraud", "request_id": ["r-1"],
                     "event_time": [T0], "label": [1]}


def test_numpy_strings_are_accepted_as_names() -> None:
    buffer = make_buffer()
    for i in range(2):
        assert buffer.add_prediction("m", "v", f"r-{i}", {np.str_("a"): 1.0, "b": 2.0},
                                     probabilities={np.str_("x"): 0.5}, event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["features"] == {"a": [1.0, 1.0], "b": [2.0, 2.0]}
    assert doc["probabilities"] == {"x": [0.5, 0.5]}


def test_integers_beyond_64_bits_are_sent_as_floats() -> None:
    buffer = make_buffer()
    assert buffer.add_prediction("m", "v", "r", {"big": 2**70, "neg": -(2**64), "ok": 2**63},
                                 event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["features"] == {"big": [float(2**70)], "neg": [float(-(2**64))], "ok": [2**63]}


def test_each_model_and_version_has_its_own_envelopes() -> None:
    buffer = make_buffer()
    for model, version in [("a", "v1"), ("a", "v2"), ("b", "v1"), ("a", "v1")]:
        assert buffer.add_prediction(model, version, f"{model}-{version}", {"x": 1.0},
                                     event_time_ms=T0)
    assert buffer.add_label("a", "a-1", 1, event_time_ms=T0)
    assert buffer.add_label("b", "b-1", 0, event_time_ms=T0)
    envelopes = buffer.drain(force=True)
    seen = {(e.kind, e.key, d["type"], d["model"], d.get("version"), e.events)
            for e, d in zip(envelopes, decoded(envelopes), strict=True)}
    assert seen == {("prediction", b"a", "prediction_batch", "a", "v1", 2),
                    ("prediction", b"a", "prediction_batch", "a", "v2", 1),
                    ("prediction", b"b", "prediction_batch", "b", "v1", 1),
                    ("label", b"a", "label_batch", "a", None, 1),
                    ("label", b"b", "label_batch", "b", None, 1)}


def test_full_buffers_are_sealed_and_wake_the_flusher() -> None:
    clock = Clock()
    buffer = make_buffer(max_batch_events=3, clock=clock)
    wakes: list[int] = []
    buffer.on_ready = lambda: wakes.append(1)
    assert buffer.seconds_until_due() is None
    for i in range(7):
        assert buffer.add_label("m", f"r-{i}", i, event_time_ms=T0)
    # Opened (1) + sealed at 3 (2) + opened again (3) + sealed at 6 (4) + opened (5).
    assert len(wakes) == 5
    assert buffer.seconds_until_due() == 0.0
    docs = decoded(buffer.drain())
    assert [d["request_id"] for d in docs] == [["r-0", "r-1", "r-2"], ["r-3", "r-4", "r-5"]]
    assert buffer.seconds_until_due() == pytest.approx(0.2)


def test_a_rejected_first_event_opens_no_buffer() -> None:
    buffer = make_buffer()
    wakes: list[int] = []
    buffer.on_ready = lambda: wakes.append(1)
    assert not buffer.add_prediction("m", "v", "r-0", {"bad": [1]})
    assert buffer.seconds_until_due() is None and wakes == []
    assert buffer.add_prediction("m", "v", "r-1", {"x": 1.0})
    assert wakes == [1]  # the flusher learns about the new buffer's deadline


def test_a_buffer_is_due_once_its_oldest_event_lingered() -> None:
    clock = Clock()
    buffer = make_buffer(linger_ms=200, clock=clock)
    assert buffer.add_label("m", "r-1", 1, event_time_ms=T0)
    clock.now += 0.125
    assert buffer.add_label("m", "r-2", 1, event_time_ms=T0)
    assert buffer.drain() == []
    assert buffer.seconds_until_due() == pytest.approx(0.075)
    clock.now += 0.125
    [doc] = decoded(buffer.drain())
    assert doc["request_id"] == ["r-1", "r-2"]


def test_memory_is_bounded_counting_events_in_flight() -> None:
    buffer = make_buffer(max_buffered_events=5)
    results = [buffer.add_label("m", f"r-{i}", 1, event_time_ms=T0) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert buffer.stats.dropped_buffer_full == 3
    [envelope] = buffer.drain(force=True)
    assert not buffer.add_label("m", "late", 1)  # handed over, not yet acknowledged
    buffer.settle(envelope.events, delivered=True)
    assert buffer.add_label("m", "after-ack", 1)
    stats = buffer.stats
    assert (stats.accepted, stats.sent_events, stats.sent_envelopes) == (6, 5, 1)
    assert stats.dropped_buffer_full == 4


def test_drops_warn_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    buffer = make_buffer(max_buffered_events=1, clock=clock)
    with caplog.at_level(logging.WARNING, logger="driftline.streams.publisher"):
        for _ in range(100):
            buffer.add_label("m", "r", 1)
        clock.now += 11
        buffer.add_label("m", "r", 1)
    assert len(caplog.records) == 2
    assert "buffer full" in caplog.records[0].getMessage()


class Opaque:
    pass


INVALID_PREDICTIONS: list[tuple[str, dict[str, Any]]] = [
    ("model none", dict(model=None)),
    ("model empty", dict(model="")),
    ("model int", dict(model=3)),
    ("model unhashable", dict(model=["m"])),
    ("version empty", dict(version="")),
    ("request id none", dict(request_id=None)),
    ("request id empty", dict(request_id="")),
    ("features none", dict(features=None)),
    ("features list", dict(features=[("x", 1.0)])),
    ("feature dict", dict(features={"x": 1.0, "new": 2.0, "bad": {"a": 1}})),
    ("feature list", dict(features={"new": 2.0, "bad": [1, 2]})),
    ("feature object", dict(features={"bad": Opaque()})),
    ("feature array", dict(features={"bad": np.zeros(3)})),
    ("feature name int", dict(features={1: 2.0})),
    ("feature complex", dict(features={"bad": 1j})),
    ("probability string", dict(probabilities={"x": 0.5, "new": "high"})),
    ("probabilities list", dict(probabilities=[0.5, 0.5])),
    ("probability names clash", dict(probabilities={1: 0.5, "1": 0.5})),
    ("score string", dict(score="high")),
    ("latency list", dict(latency_ms=[1.0])),
    ("prediction dict", dict(prediction={"a": 1})),
    ("status int", dict(status=5)),
    ("event time negative", dict(event_time_ms=-1)),
    ("event time string", dict(event_time_ms="now")),
    ("event time nan", dict(event_time_ms=math.nan)),
]


@pytest.mark.parametrize("case", [c for _, c in INVALID_PREDICTIONS],
                         ids=[name for name, _ in INVALID_PREDICTIONS])
def test_invalid_predictions_are_dropped_and_counted(case: dict[str, Any]) -> None:
    buffer = make_buffer()
    assert buffer.add_prediction("m", "v", "r-0", {"x": 1.0}, probabilities={"x": 1.0},
                                 event_time_ms=T0)
    event: dict[str, Any] = dict(model="m", version="v", request_id="r-1",
                                 features={"x": 2.0}, event_time_ms=T0)
    event.update(case)
    assert buffer.add_prediction(**event) is False
    assert buffer.stats.dropped_invalid == 1 and buffer.stats.accepted == 1
    # Nothing of the bad event is left behind, not even a new feature column.
    [doc] = decoded(buffer.drain(force=True))
    assert doc["request_id"] == ["r-0"]
    assert doc["features"] == {"x": [1.0]} and doc["probabilities"] == {"x": [1.0]}


@pytest.mark.parametrize("model, request_id, label", [
    (None, "r", 1), ("m", None, 1), ("m", "r", None), ("m", "r", math.nan),
    ("m", "r", math.inf), ("m", "r", {"a": 1}), ("m", "r", [1]), ("\ud800", "r", 1),
])
def test_invalid_labels_are_dropped_and_counted(model: Any, request_id: Any,
                                                label: Any) -> None:
    buffer = make_buffer()
    assert buffer.add_label(model, request_id, label) is False
    assert buffer.stats.dropped_invalid == 1
    assert buffer.drain(force=True) == []


def test_ints_and_uuids_are_accepted_as_request_ids() -> None:
    import uuid

    buffer = make_buffer()
    request = uuid.UUID(int=1)
    assert buffer.add_label("m", 42, 1, event_time_ms=T0)
    assert buffer.add_label("m", request, 1, event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["request_id"] == ["42", str(request)]


def test_oversize_envelopes_are_split_in_halves_keeping_every_event_once_in_order() -> None:
    buffer = make_buffer(max_envelope_bytes=2_000)
    rng = np.random.default_rng(0)
    for i in range(101):
        features = {f"f{j}": float(rng.normal()) for j in range(5) if (i + j) % 3}
        assert buffer.add_prediction("m", "v", f"r-{i}", features, score=0.5,
                                     event_time_ms=T0 + i)
    envelopes = buffer.drain(force=True)
    assert len(envelopes) > 4
    assert all(len(e.value) <= 2_000 for e in envelopes)
    docs = decoded(envelopes)
    assert [r for d in docs for r in d["request_id"]] == [f"r-{i}" for i in range(101)]
    assert sum(e.events for e in envelopes) == 101
    for doc in docs:  # every piece keeps the whole buffer's feature columns, nulls and all
        n = len(doc["request_id"])
        assert sorted(doc["features"]) == [f"f{j}" for j in range(5)]
        assert all(len(c) == n for c in [*doc["features"].values(), doc["score"]])


def test_an_event_too_large_alone_is_dropped_and_counted() -> None:
    buffer = make_buffer(max_envelope_bytes=1_000)
    assert buffer.add_prediction("m", "v", "r-0", {"x": "a"}, event_time_ms=T0)
    assert buffer.add_prediction("m", "v", "r-1", {"x": "b" * 2_000}, event_time_ms=T0)
    assert buffer.add_prediction("m", "v", "r-2", {"x": "c"}, event_time_ms=T0)
    docs = decoded(buffer.drain(force=True))
    assert [r for d in docs for r in d["request_id"]] == ["r-0", "r-2"]
    assert buffer.stats.dropped_invalid == 1 and buffer.held == 2


def test_an_unencodable_string_loses_only_its_own_event() -> None:
    buffer = make_buffer()
    for i, request_id in enumerate(["r-0", "r-\ud800", "r-2", "r-3"]):
        assert buffer.add_label("m", request_id, 1, event_time_ms=T0 + i)
    docs = decoded(buffer.drain(force=True))
    assert [r for d in docs for r in d["request_id"]] == ["r-0", "r-2", "r-3"]
    assert buffer.stats.dropped_invalid == 1


def test_closing_refuses_new_events_and_discarding_counts_what_was_left() -> None:
    buffer = make_buffer()
    assert buffer.add_label("m", "r-1", 1)
    buffer.close()
    assert buffer.add_label("m", "r-2", 1) is False
    assert buffer.discard() == 1
    stats = buffer.stats
    assert (stats.accepted, stats.dropped_send_failed, buffer.held) == (1, 2, 0)


def test_failed_sends_are_counted() -> None:
    buffer = make_buffer()
    for i in range(3):
        buffer.add_label("m", f"r-{i}", 1)
    [envelope] = buffer.drain(force=True)
    buffer.settle(envelope.events, delivered=False)
    assert (buffer.stats.dropped_send_failed, buffer.held) == (3, 0)


def test_settings_map_to_producer_options() -> None:
    import ssl

    from driftline.streams.publisher import AsyncPublisher
    from driftline.streams.publisher._async import options_from_settings
    from driftline.streams.settings import Settings

    plain = Settings(kafka_bootstrap="k:9092", predictions_topic="p", labels_topic="l")
    assert options_from_settings(plain) == {
        "bootstrap_servers": "k:9092", "predictions_topic": "p", "labels_topic": "l",
        "security_protocol": "PLAINTEXT", "max_envelope_bytes": 900_000}
    secure = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN",
                      kafka_sasl_username="user", kafka_sasl_password="secret")
    options = options_from_settings(secure)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options["sasl_plain_username"] == "user" and options["sasl_mechanism"] == "PLAIN"
    publisher = AsyncPublisher.from_settings(plain, linger_ms=5, compression_type="gzip")
    assert (publisher.bootstrap_servers, publisher.predictions_topic) == ("k:9092", "p")
    assert publisher.producer_options == {"acks": "all", "client_id": "driftline-publisher",
                                          "security_protocol": "PLAINTEXT",
                                          "compression_type": "gzip"}


# --- property: decoding every envelope gives back exactly the accepted events --------

FINITE_OR_NOT = st.floats(allow_nan=True, allow_infinity=True)
FEATURE_VALUES = st.one_of(
    st.none(), FINITE_OR_NOT, st.integers(-(2**70), 2**70), st.text(max_size=4),
    st.booleans(), st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)), st.builds(np.str_, st.text(max_size=3)))
FEATURES = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), FEATURE_VALUES,
                           max_size=5)
PREDICTION = st.fixed_dictionaries({
    "model": st.sampled_from(["m1", "m2"]), "version": st.sampled_from(["v1", "v2"]),
    "request_id": st.text(min_size=1, max_size=6), "features": FEATURES,
    "prediction": st.one_of(st.none(), st.text(max_size=3), st.integers(0, 3), FINITE_OR_NOT),
    "score": st.one_of(st.none(), FINITE_OR_NOT),
    "probabilities": st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["x", "y"]), st.one_of(st.none(), FINITE_OR_NOT), max_size=2)),
    "latency_ms": st.one_of(st.none(), st.floats(0, 1e4)),
    "status": st.sampled_from(["ok", "error"]),
    "event_time_ms": st.integers(0, 2**41),
})
OPERATIONS = st.lists(st.one_of(PREDICTION, st.just("drain")), max_size=60)


def normalized(value: Any) -> Any:
    """What the wire carries for a scalar the buffer accepted."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def expected_event(event: dict[str, Any]) -> dict[str, Any]:
    def present(row: dict[str, Any] | None) -> dict[str, Any]:
        return {k: normalized(v) for k, v in (row or {}).items() if normalized(v) is not None}

    return {"request_id": event["request_id"], "event_time": event["event_time_ms"],
            "features": present(event["features"]),
            "prediction": normalized(event["prediction"]), "score": normalized(event["score"]),
            "probabilities": present(event["probabilities"]),
            "latency_ms": event["latency_ms"], "status": event["status"]}


def reassembled(doc: dict[str, Any]) -> list[dict[str, Any]]:
    def row(columns: dict[str, list[Any]], i: int) -> dict[str, Any]:
        return {k: c[i] for k, c in columns.items() if c[i] is not None}

    n = len(doc["request_id"])
    assert all(len(c) == n for c in doc["features"].values())
    return [{"request_id": doc["request_id"][i], "event_time": doc["event_time"][i],
             "features": row(doc["features"], i),
             "prediction": doc.get("prediction", [None] * n)[i],
             "score": doc.get("score", [None] * n)[i],
             "probabilities": row(doc.get("probabilities", {}), i),
             "latency_ms": doc.get("latency_ms", [None] * n)[i],
             "status": doc["status"][i]} for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS, max_batch_events=st.integers(1, 8),
       max_envelope_bytes=st.sampled_from([300, 600, 100_000]))
def test_envelopes_reassemble_into_exactly_the_accepted_events(
        operations: list[Any], max_batch_events: int, max_envelope_bytes: int) -> None:
    buffer = make_buffer(max_batch_events=max_batch_events,
                         max_envelope_bytes=max_envelope_bytes)
    sent: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    got: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def drain() -> None:
        for envelope in buffer.drain(force=True):
            assert len(envelope.value) <= max_envelope_bytes
            doc = orjson.loads(envelope.value)
            assert envelope.key == doc["model"].encode()
            got[doc["model"], doc["version"]].extend(reassembled(doc))

    for operation in operations:
        if operation == "drain":
            drain()
        elif buffer.add_prediction(**operation):
            sent[operation["model"], operation["version"]].append(expected_event(operation))
    drain()
    too_large = buffer.stats.dropped_invalid
    if too_large == 0:
        assert got == {k: v for k, v in sent.items() if v}
    else:  # tiny limits can make a lone event too large: the rest is still exact, in order
        for key, events in got.items():
            remaining = iter(sent[key])
            assert all(any(e == s for s in remaining) for e in events)
        assert sum(map(len, got.values())) + too_large == sum(map(len, sent.values()))
    assert buffer.held == sum(map(len, got.values()))


# --- outcomes ------------------------------------------------------------------------


def test_outcome_envelope_layout() -> None:
    buffer = make_buffer()
    assert buffer.add_outcome("m", "r1", {"converted": 1}, event_time_ms=T0)
    assert buffer.add_outcome("m", "r2", {"revenue": 12.5}, event_time_ms=T0 + 1)
    [envelope] = buffer.drain(force=True)
    assert (envelope.kind, envelope.key, envelope.events) == ("outcome", b"m", 2)
    assert orjson.loads(envelope.value) == {
        "type": "outcome_batch", "model": "m", "request_id": ["r1", "r2"],
        "event_time": [T0, T0 + 1], "outcomes": {"converted": [1, None], "revenue": [None, 12.5]}}


def test_outcome_booleans_are_sent_as_one_and_zero() -> None:
    buffer = make_buffer()
    assert buffer.add_outcome("m", "r1", {"converted": True, "clicked": np.bool_(False)},
                              event_time_ms=T0)
    assert buffer.add_outcome("m", "r2", {"converted": False, "clicked": True},
                              event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["outcomes"] == {"converted": [1, 0], "clicked": [0, 1]}
    assert all(type(v) is int for c in doc["outcomes"].values() for v in c)


def test_outcome_numbers_of_any_spelling_are_accepted() -> None:
    import decimal

    buffer = make_buffer()
    outcomes = {"a": np.float32(2.5), "b": np.int64(7), "c": decimal.Decimal("1.25"),
                "d": 2**70, np.str_("e"): -3}
    assert buffer.add_outcome("m", 42, outcomes, event_time_ms=np.int64(T0))
    [doc] = decoded(buffer.drain(force=True))
    assert doc["request_id"] == ["42"] and doc["event_time"] == [T0]
    assert doc["outcomes"] == {"a": [2.5], "b": [7], "c": [1.25], "d": [float(2**70)],
                               "e": [-3]}


def test_an_outcome_first_seen_mid_batch_is_null_for_earlier_events() -> None:
    buffer = make_buffer()
    assert buffer.add_outcome("m", "r0", {"converted": 1}, event_time_ms=T0)
    assert buffer.add_outcome("m", "r1", {"converted": 0}, event_time_ms=T0)
    assert buffer.add_outcome("m", "r2", {"refund": 3.0, "converted": 1}, event_time_ms=T0)
    assert buffer.add_outcome("m", "r3", {"churned": True}, event_time_ms=T0)
    [doc] = decoded(buffer.drain(force=True))
    assert doc["outcomes"] == {"converted": [1, 0, 1, None], "refund": [None, None, 3.0, None],
                               "churned": [None, None, None, 1]}


def test_the_default_outcome_event_time_is_now_in_utc_milliseconds() -> None:
    import time

    buffer = make_buffer()
    before = time.time_ns() // 1_000_000
    assert buffer.add_outcome("m", "r1", {"converted": True})
    [doc] = decoded(buffer.drain(force=True))
    assert before <= doc["event_time"][0] <= time.time_ns() // 1_000_000


INVALID_OUTCOMES: list[tuple[str, dict[str, Any]]] = [
    ("model none", dict(model=None)),
    ("model empty", dict(model="")),
    ("model unhashable", dict(model=["m"])),
    ("request id none", dict(request_id=None)),
    ("request id empty", dict(request_id="")),
    ("event time negative", dict(event_time_ms=-1)),
    ("event time nan", dict(event_time_ms=math.nan)),
    ("outcomes none", dict(outcomes=None)),
    ("outcomes list", dict(outcomes=[("converted", 1)])),
    ("outcomes empty", dict(outcomes={})),
    ("name empty", dict(outcomes={"new": 1, "": 1})),
    ("name too long", dict(outcomes={"x" * 257: 1})),
    ("name int", dict(outcomes={1: 1})),
    ("value none", dict(outcomes={"new": 1, "converted": None})),
    ("value nan", dict(outcomes={"new": 1, "revenue": math.nan})),
    ("value inf", dict(outcomes={"revenue": math.inf})),
    ("value numpy nan", dict(outcomes={"revenue": np.float32("nan")})),
    ("value decimal nan", dict(outcomes={"revenue": __import__("decimal").Decimal("NaN")})),
    ("value too large for a float", dict(outcomes={"revenue": 10**400})),
    ("value string", dict(outcomes={"converted": "yes"})),
    ("value list", dict(outcomes={"converted": [1]})),
    ("value array", dict(outcomes={"converted": np.zeros(2)})),
    ("value object", dict(outcomes={"converted": Opaque()})),
]


@pytest.mark.parametrize("case", [c for _, c in INVALID_OUTCOMES],
                         ids=[name for name, _ in INVALID_OUTCOMES])
def test_invalid_outcomes_are_dropped_and_counted(case: dict[str, Any]) -> None:
    buffer = make_buffer()
    assert buffer.add_outcome("m", "r0", {"converted": 1}, event_time_ms=T0)
    event: dict[str, Any] = dict(model="m", request_id="r1", outcomes={"converted": 0},
                                 event_time_ms=T0)
    event.update(case)
    assert buffer.add_outcome(**event) is False
    assert buffer.stats.dropped_invalid == 1 and buffer.stats.accepted == 1
    assert buffer.stats.nonfinite_values_nulled == 0  # rejected, not nulled
    # Nothing of the bad event is left behind, not even a new outcome column.
    [doc] = decoded(buffer.drain(force=True))
    assert doc["request_id"] == ["r0"] and doc["outcomes"] == {"converted": [1]}


def test_a_name_of_256_characters_is_accepted() -> None:
    buffer = make_buffer()
    assert buffer.add_outcome("m", "r1", {"x" * 256: 1}, event_time_ms=T0)


def test_a_rejected_first_outcome_opens_no_buffer() -> None:
    buffer = make_buffer()
    wakes: list[int] = []
    buffer.on_ready = lambda: wakes.append(1)
    assert not buffer.add_outcome("m", "r0", {"revenue": math.nan})
    assert buffer.seconds_until_due() is None and wakes == []
    assert buffer.drain(force=True) == []
    assert buffer.add_outcome("m", "r1", {"revenue": 1.0})
    assert wakes == [1]


def test_outcomes_are_batched_per_model_apart_from_labels() -> None:
    buffer = make_buffer()
    for model, request_id in [("a", "a1"), ("b", "b1"), ("a", "a2")]:
        assert buffer.add_outcome(model, request_id, {"converted": 1}, event_time_ms=T0)
    assert buffer.add_label("a", "a1", 1, event_time_ms=T0)
    envelopes = buffer.drain(force=True)
    seen = {(e.kind, e.key, d["type"], d["model"], tuple(d["request_id"]))
            for e, d in zip(envelopes, decoded(envelopes), strict=True)}
    assert seen == {("outcome", b"a", "outcome_batch", "a", ("a1", "a2")),
                    ("outcome", b"b", "outcome_batch", "b", ("b1",)),
                    ("label", b"a", "label_batch", "a", ("a1",))}


def test_full_outcome_buffers_are_sealed_and_linger_like_labels() -> None:
    clock = Clock()
    buffer = make_buffer(max_batch_events=3, linger_ms=200, clock=clock)
    wakes: list[int] = []
    buffer.on_ready = lambda: wakes.append(1)
    for i in range(7):
        assert buffer.add_outcome("m", f"r-{i}", {"revenue": float(i)}, event_time_ms=T0)
    assert len(wakes) == 5  # opened, sealed, opened, sealed, opened
    assert buffer.seconds_until_due() == 0.0
    docs = decoded(buffer.drain())
    assert [d["request_id"] for d in docs] == [["r-0", "r-1", "r-2"], ["r-3", "r-4", "r-5"]]
    assert buffer.seconds_until_due() == pytest.approx(0.2)
    clock.now += 0.2
    [doc] = decoded(buffer.drain())
    assert doc["outcomes"] == {"revenue": [6.0]}


def test_outcomes_count_against_the_memory_bound_and_closing() -> None:
    buffer = make_buffer(max_buffered_events=2)
    results = [buffer.add_outcome("m", f"r-{i}", {"x": 1}, event_time_ms=T0) for i in range(3)]
    assert results == [True, True, False]
    assert buffer.stats.dropped_buffer_full == 1
    buffer.close()
    assert buffer.add_outcome("m", "late", {"x": 1}) is False
    assert buffer.discard() == 2
    stats = buffer.stats
    assert (stats.accepted, stats.dropped_send_failed, buffer.held) == (2, 3, 0)


def test_split_outcome_envelopes_fit_and_leave_out_names_no_event_of_theirs_reports() -> None:
    buffer = make_buffer(max_envelope_bytes=400)
    for i in range(40):
        outcomes = {"converted": i % 2} if i < 20 else {"revenue": float(i)}
        assert buffer.add_outcome("m", f"r-{i}", outcomes, event_time_ms=T0 + i)
    envelopes = buffer.drain(force=True)
    assert len(envelopes) > 2 and all(len(e.value) <= 400 for e in envelopes)
    docs = decoded(envelopes)
    assert [r for d in docs for r in d["request_id"]] == [f"r-{i}" for i in range(40)]
    for doc in docs:
        assert doc["outcomes"]  # every piece reports something for each of its events
        for column in doc["outcomes"].values():
            assert len(column) == len(doc["request_id"]) and column.count(None) < len(column)


def test_an_unencodable_outcome_name_loses_only_the_events_reporting_it() -> None:
    buffer = make_buffer()
    for i in range(4):
        outcomes = {"bad\ud800": 1} if i == 2 else {"converted": 1}
        assert buffer.add_outcome("m", f"r-{i}", outcomes, event_time_ms=T0)
    docs = decoded(buffer.drain(force=True))
    assert [r for d in docs for r in d["request_id"]] == ["r-0", "r-1", "r-3"]
    assert all(d["outcomes"] == {"converted": [1] * len(d["request_id"])} for d in docs)
    assert buffer.stats.dropped_invalid == 1 and buffer.held == 3


OUTCOME_VALUES = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not math.isfinite(v)),
    st.none(), st.text(max_size=2))
OUTCOME = st.fixed_dictionaries({
    "model": st.sampled_from(["m1", "m2"]), "request_id": st.text(min_size=1, max_size=6),
    "outcomes": st.dictionaries(st.sampled_from(["converted", "revenue", "clicked", "n"]),
                                OUTCOME_VALUES, max_size=3),
    "event_time_ms": st.integers(0, 2**41),
})


@settings(max_examples=150, deadline=None)
@given(operations=st.lists(st.one_of(OUTCOME, st.just("drain")), max_size=60),
       max_batch_events=st.integers(1, 8),
       max_envelope_bytes=st.sampled_from([300, 600, 100_000]))
def test_every_accepted_outcome_arrives_exactly_once(
        operations: list[Any], max_batch_events: int, max_envelope_bytes: int) -> None:
    buffer = make_buffer(max_batch_events=max_batch_events,
                         max_envelope_bytes=max_envelope_bytes)
    sent: list[tuple[str, str, int, str, Any]] = []
    got: list[tuple[str, str, int, str, Any]] = []

    def drain() -> None:
        for envelope in buffer.drain(force=True):
            assert len(envelope.value) <= max_envelope_bytes
            doc = orjson.loads(envelope.value)
            assert doc["type"] == "outcome_batch" and envelope.key == doc["model"].encode()
            assert envelope.events == len(doc["request_id"]) == len(doc["event_time"])
            for name, column in doc["outcomes"].items():
                assert len(column) == envelope.events
                got.extend((doc["model"], doc["request_id"][i], doc["event_time"][i], name, v)
                           for i, v in enumerate(column) if v is not None)

    for operation in operations:
        if operation == "drain":
            drain()
            continue
        valid = bool(operation["outcomes"]) and all(
            isinstance(v, int | float) and math.isfinite(v)
            for v in operation["outcomes"].values())
        accepted = buffer.add_outcome(**operation)
        assert accepted == valid
        if accepted:
            sent.extend((operation["model"], operation["request_id"],
                         operation["event_time_ms"], name, normalized(value))
                        for name, value in operation["outcomes"].items())
    drain()
    # A multiset: an outcome logged twice is sent twice, one logged once is sent once.
    assert sorted(got, key=repr) == sorted(sent, key=repr)
    stats = buffer.stats
    assert stats.accepted + stats.dropped_invalid == sum(1 for o in operations if o != "drain")
    assert buffer.held == stats.accepted  # drained, none settled yet
