"""Decoding OTLP trace messages as the Collector's Kafka exporter writes them.

The spans come from the real OpenTelemetry SDK and are encoded by the real OTLP exporter
code (``encode_spans``), so the protobuf fixture is byte for byte what an exporter sends.
The JSON fixture is that request through protobuf's JSON mapping (lowerCamelCase keys,
64-bit integers as decimal strings, enums as integers) with one change the OTLP/JSON
specification makes to that mapping: trace and span ids are hex, not base64. The test
converts them, giving what the Collector's ``otlp_json`` encoding writes.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

from driftline.models.events.wire import BadMessage
from driftline.models.traces.spans import (
    SpanBatch,
    decode_otlp_json,
    decode_otlp_proto,
    edges,
    parent_services,
)
from driftline.streams.demo.traces import ServiceTracer

T0 = 1_764_230_400_000_000_000  # 2025-11-27T08:00:00Z, in nanoseconds
MS = 1_000_000


def record_call_chain() -> list[ReadableSpan]:
    """gateway -> ranker -> feature-store, as three services' SDKs record it.

    - gateway: SERVER ``GET /recommend`` and its CLIENT ``call ranker`` (no peer attribute);
    - ranker: SERVER ``rank`` (child of the gateway's client span), CLIENT ``GET /features``
      with ``peer.service`` feature-store, CLIENT ``POST /score`` with only
      ``server.address``, INTERNAL ``sort``;
    - feature-store: SERVER ``features`` (child of the ranker's client span), status ERROR.
    """
    gateway, ranker, store = (ServiceTracer(n) for n in ("gateway", "ranker", "feature-store"))

    def child_of(span: trace.Span) -> Any:
        return trace.set_span_in_context(span)

    root = gateway.tracer.start_span("GET /recommend", kind=SpanKind.SERVER, start_time=T0)
    call = gateway.tracer.start_span("call ranker", context=child_of(root), kind=SpanKind.CLIENT,
                                     start_time=T0 + 1 * MS)
    rank = ranker.tracer.start_span("rank", context=child_of(call), kind=SpanKind.SERVER,
                                    start_time=T0 + 2 * MS)
    fetch = ranker.tracer.start_span("GET /features", context=child_of(rank),
                                     kind=SpanKind.CLIENT, start_time=T0 + 3 * MS,
                                     attributes={"peer.service": "feature-store",
                                                 "server.address": "fs.internal",
                                                 "http.request.method": "GET"})
    serve = store.tracer.start_span("features", context=child_of(fetch), kind=SpanKind.SERVER,
                                    start_time=T0 + 4 * MS)
    serve.set_status(Status(StatusCode.ERROR, "feature missing"))
    serve.end(end_time=T0 + 9 * MS)
    fetch.end(end_time=T0 + 10 * MS + 250_000)
    score = ranker.tracer.start_span("POST /score", context=child_of(rank), kind=SpanKind.CLIENT,
                                     start_time=T0 + 11 * MS,
                                     attributes={"server.address": "scorer.internal",
                                                 "server.port": 443})
    score.end(end_time=T0 + 14 * MS)
    sort = ranker.tracer.start_span("sort", context=child_of(rank), start_time=T0 + 15 * MS)
    sort.end(end_time=T0 + 15 * MS + 1)
    rank.end(end_time=T0 + 16 * MS)
    call.end(end_time=T0 + 17 * MS)
    root.end(end_time=T0 + 18 * MS)
    return gateway.take() + ranker.take() + store.take()


@pytest.fixture(scope="module")
def sdk_spans() -> list[ReadableSpan]:
    return record_call_chain()


def otlp_proto(spans: list[ReadableSpan]) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def otlp_json_doc(spans: list[ReadableSpan]) -> dict[str, Any]:
    """The request as the Collector's ``otlp_json`` encoding writes it: protobuf's JSON
    mapping with integer enums, its base64 ids rewritten as the lowercase hex OTLP/JSON
    requires (spans' and links' ``traceId``, ``spanId`` and ``parentSpanId``)."""
    doc: dict[str, Any] = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for span in all_spans(doc):
        for holder in (span, *span.get("links", ())):
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in holder:
                    holder[key] = base64.b64decode(holder[key]).hex()
    return doc


def all_spans(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            yield from ss["spans"]


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    return orjson.dumps(otlp_json_doc(spans))


def rows(batch: SpanBatch) -> list[dict[str, Any]]:
    """The batch as one dict per span (numpy values as Python ones), to compare whole."""
    assert len({len(batch.trace_id), len(batch.span_id), len(batch.parent_span_id),
                len(batch.service), len(batch.name), len(batch.kind), len(batch.peer_service),
                len(batch.start_ms), len(batch.duration_ms), len(batch.error)}) == 1
    assert batch.start_ms.dtype == np.int64 and batch.duration_ms.dtype == np.float64
    assert batch.error.dtype == np.bool_
    return [{"trace_id": batch.trace_id[i], "span_id": batch.span_id[i],
             "parent_span_id": batch.parent_span_id[i], "service": batch.service[i],
             "name": batch.name[i], "kind": batch.kind[i],
             "peer_service": batch.peer_service[i], "start_ms": int(batch.start_ms[i]),
             "duration_ms": float(batch.duration_ms[i]), "error": bool(batch.error[i])}
            for i in range(len(batch))]


def expected_rows(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """What every field must be, from the SDK's own span objects."""
    kinds = {SpanKind.SERVER: "SERVER", SpanKind.CLIENT: "CLIENT", SpanKind.INTERNAL: "INTERNAL",
             SpanKind.PRODUCER: "PRODUCER", SpanKind.CONSUMER: "CONSUMER"}
    peers = {"GET /features": "feature-store", "POST /score": "scorer.internal"}
    out = []
    for span in spans:
        assert span.context is not None and span.start_time and span.end_time
        out.append({
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
            "service": span.resource.attributes["service.name"], "name": span.name,
            "kind": kinds[span.kind], "peer_service": peers.get(span.name, ""),
            "start_ms": span.start_time // MS,
            "duration_ms": (span.end_time - span.start_time) / MS,
            "error": span.status.status_code is StatusCode.ERROR})
    return out


EXPECTED_BY_NAME = {
    # name: (service, kind, peer_service, start_ms offset, duration_ms, error)
    "GET /recommend": ("gateway", "SERVER", "", 0, 18.0, False),
    "call ranker": ("gateway", "CLIENT", "", 1, 16.0, False),
    "rank": ("ranker", "SERVER", "", 2, 14.0, False),
    "GET /features": ("ranker", "CLIENT", "feature-store", 3, 7.25, False),
    "POST /score": ("ranker", "CLIENT", "scorer.internal", 11, 3.0, False),
    "sort": ("ranker", "INTERNAL", "", 15, 0.000001, False),
    "features": ("feature-store", "SERVER", "", 4, 5.0, True),
}


@pytest.mark.parametrize("decode, encode", [(decode_otlp_proto, otlp_proto),
                                            (decode_otlp_json, otlp_json)],
                         ids=["otlp_proto", "otlp_json"])
def test_every_field_of_sdk_spans(decode: Any, encode: Any,
                                  sdk_spans: list[ReadableSpan]) -> None:
    batch = decode(encode(sdk_spans))
    assert len(batch) == 7 and batch.dropped == 0
    got = rows(batch)
    # encode_spans groups spans by resource, then scope: compare as sets of rows by id.
    assert sorted(got, key=lambda r: r["span_id"]) == sorted(expected_rows(sdk_spans),
                                                             key=lambda r: r["span_id"])
    t0_ms = T0 // MS
    for row in got:
        service, kind, peer, offset, duration, error = EXPECTED_BY_NAME[row["name"]]
        assert (row["service"], row["kind"], row["peer_service"]) == (service, kind, peer)
        assert row["start_ms"] == t0_ms + offset
        assert row["duration_ms"] == pytest.approx(duration, abs=1e-9)
        assert row["error"] is error
        assert len(row["trace_id"]) == 32 and len(row["span_id"]) == 16
    assert len(set(batch.trace_id)) == 1  # one trace across the three services
    by_name = {row["name"]: row for row in got}
    assert by_name["GET /recommend"]["parent_span_id"] == ""
    assert by_name["features"]["parent_span_id"] == by_name["GET /features"]["span_id"]
    assert by_name["rank"]["parent_span_id"] == by_name["call ranker"]["span_id"]


def test_both_encodings_give_identical_batches(sdk_spans: list[ReadableSpan]) -> None:
    from_proto = decode_otlp_proto(otlp_proto(sdk_spans))
    from_json = decode_otlp_json(otlp_json(sdk_spans))
    assert rows(from_proto) == rows(from_json)
    assert from_proto.dropped == from_json.dropped == 0


def test_the_json_fixture_is_otlp_json(sdk_spans: list[ReadableSpan]) -> None:
    """The fixture's shape is the Collector's: camelCase keys, hex ids, integer enums,
    times as decimal strings, attribute values as AnyValue objects."""
    doc = otlp_json_doc(sdk_spans)
    resource = doc["resourceSpans"][0]["resource"]
    assert {"key": "service.name", "value": {"stringValue": "gateway"}} in resource["attributes"]
    span = next(s for s in all_spans(doc) if s["name"] == "features")
    assert set(span) >= {"traceId", "spanId", "parentSpanId", "name", "kind",
                         "startTimeUnixNano", "endTimeUnixNano", "status"}
    assert span["kind"] == 2 and span["status"]["code"] == 2
    assert isinstance(span["startTimeUnixNano"], str) and span["startTimeUnixNano"].isdigit()
    int(span["traceId"], 16)
    assert len(span["traceId"]) == 32 and span["traceId"] == span["traceId"].lower()


def test_protobuf_json_mapping_with_base64_ids_is_refused(sdk_spans: list[ReadableSpan]) -> None:
    """protobuf's standard JSON (base64 ids) is not OTLP/JSON: refused, never misread."""
    plain = MessageToDict(encode_spans(sdk_spans), use_integers_for_enums=True)
    with pytest.raises(BadMessage, match="traceId must be 32 hex digits"):
        decode_otlp_json(orjson.dumps(plain))


def test_json_accepts_spec_variants(sdk_spans: list[ReadableSpan]) -> None:
    """Uppercase hex (ids are case-insensitive), times as numbers, enum names (protobuf's
    default JSON printer) and unknown keys all decode to the same batch."""
    reference = rows(decode_otlp_json(otlp_json(sdk_spans)))
    doc = otlp_json_doc(sdk_spans)
    kind_names = {1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER", 3: "SPAN_KIND_CLIENT"}
    for span in all_spans(doc):
        span["traceId"] = span["traceId"].upper()
        span["spanId"] = span["spanId"].upper()
        span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
        span["kind"] = kind_names[span["kind"]]
        if span.get("status", {}).get("code") == 2:
            span["status"]["code"] = "STATUS_CODE_ERROR"
        span["someFutureField"] = {"nested": [1, 2]}
    doc["someFutureField"] = True
    assert rows(decode_otlp_json(orjson.dumps(doc))) == reference


def test_peer_service_preference_and_client_only() -> None:
    def client(kind: int, *attributes: tuple[str, str]) -> dict[str, Any]:
        return {"traceId": "ab" * 16, "spanId": f"{kind:016x}", "kind": kind,
                "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes]}

    spans = [client(3, ("net.peer.name", "c"), ("server.address", "b"), ("peer.service", "a")),
             client(3, ("net.peer.name", "c"), ("server.address", "b")),
             client(3, ("net.peer.name", "c")),
             client(3, ("http.method", "GET")),
             client(2, ("peer.service", "a")),  # a SERVER span's peer.service is its caller
             client(4, ("peer.service", "a"))]
    spans[3]["attributes"].append({"key": "peer.service", "value": {"intValue": "7"}})
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    batch = decode_otlp_json(orjson.dumps(doc))
    assert batch.peer_service == ["a", "b", "c", "", "", ""]
    assert batch.service == [""] * 6  # no resource, no service.name
    assert batch.kind == ["CLIENT"] * 4 + ["SERVER", "PRODUCER"]
    # The same spans through protobuf (its JSON parser wants base64 ids).
    proto_doc = copy.deepcopy(doc)
    for span in all_spans(proto_doc):
        span["traceId"] = base64.b64encode(bytes.fromhex(span["traceId"])).decode()
        span["spanId"] = base64.b64encode(bytes.fromhex(span["spanId"])).decode()
    request = ParseDict(proto_doc, ExportTraceServiceRequest())
    assert rows(decode_otlp_proto(request.SerializeToString())) == rows(batch)


def test_edges_join_parents_within_the_batch(sdk_spans: list[ReadableSpan]) -> None:
    for batch in (decode_otlp_proto(otlp_proto(sdk_spans)),
                  decode_otlp_json(otlp_json(sdk_spans))):
        index = {name: i for i, name in enumerate(batch.name)}
        parents = parent_services(batch)
        assert {name: parents[i] for name, i in index.items()} == {
            "GET /recommend": "", "call ranker": "gateway", "rank": "gateway",
            "GET /features": "ranker", "POST /score": "ranker", "sort": "ranker",
            "features": "ranker"}
        assert sorted(edges(batch)) == sorted([
            # the gateway's client span names no callee: found by the server span's parent
            (index["rank"], "gateway", "ranker"),
            # client spans naming the callee; feature-store's server span adds no second edge
            (index["GET /features"], "ranker", "feature-store"),
            (index["POST /score"], "ranker", "scorer.internal")])


def test_parents_in_another_message_are_not_joined(sdk_spans: list[ReadableSpan]) -> None:
    """Each service's spans in its own message: only client spans naming the callee give
    edges; the gateway -> ranker call (no peer attribute) is lost."""
    found = []
    for service in ("gateway", "ranker", "feature-store"):
        own = [s for s in sdk_spans if s.resource.attributes["service.name"] == service]
        batch = decode_otlp_proto(otlp_proto(own))
        if service == "feature-store":
            assert parent_services(batch) == [""]
        found += [(batch.name[i], caller, callee) for i, caller, callee in edges(batch)]
    assert sorted(found) == [("GET /features", "ranker", "feature-store"),
                             ("POST /score", "ranker", "scorer.internal")]


def test_a_parent_span_of_another_trace_is_not_a_parent() -> None:
    def span(trace_id: str, span_id: str, parent: str = "") -> dict[str, Any]:
        return {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "kind": 2}

    doc = {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]},
         "scopeSpans": [{"spans": [span("01" * 16, "0a" * 8)]}]},
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "b"}}]},
         "scopeSpans": [{"spans": [span("02" * 16, "0b" * 8, "0a" * 8),
                                   span("01" * 16, "0c" * 8, "0a" * 8)]}]}]}
    batch = decode_otlp_json(orjson.dumps(doc))
    assert parent_services(batch) == ["", "", "a"]
    assert edges(batch) == [(2, "a", "b")]


def test_spans_without_valid_ids_are_dropped_and_counted() -> None:
    ok = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "ok", "parentSpanId": "0" * 16}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {**ok, "traceId": "0" * 32}, ok, {"name": "no ids"}, {**ok, "spanId": ""}]}]}]}
    batch = decode_otlp_json(orjson.dumps(doc))
    assert batch.name == ["ok"] and batch.dropped == 3
    assert batch.parent_span_id == [""]  # an all-zero parent id is no parent
    assert rows(batch)[0]["kind"] == "UNSPECIFIED" and rows(batch)[0]["start_ms"] == 0


def test_empty_messages_give_empty_batches() -> None:
    for batch in (decode_otlp_json(b"{}"), decode_otlp_json(b'{"resourceSpans": []}'),
                  decode_otlp_json(b'{"resourceSpans": [{"scopeSpans": [{}]}]}'),
                  decode_otlp_proto(b"")):
        assert len(batch) == 0 and batch.dropped == 0 and rows(batch) == []
        assert edges(batch) == [] and parent_services(batch) == []


SPAN = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x", "kind": 2,
        "startTimeUnixNano": "1764230400000000000", "endTimeUnixNano": "1764230400001000000"}


def one_span(**fields: Any) -> bytes:
    return orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{**SPAN, **fields}]}]}]})


@pytest.mark.parametrize("value, reason", [
    (None, "message has no value"),
    (b"x" * 100, "over the 50-byte limit"),
    (b"not json", "not valid JSON"),
    (b"[]", "expected an OTLP/JSON object, got list"),
    (b'{"resource_spans": []}', "lowerCamelCase"),
    (b'{"resourceSpans": {}}', "'resourceSpans' must be a list, got dict"),
    (b'{"resourceSpans": [1]}', "before span 0: expected an object, got int"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": "abc"}]}]}', "'spans' must be a list"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{}, []]}]}]}', "span 1 is not an object"),
    (one_span(status=[2]), "span 0: status must be an object"),
    (one_span(traceId="ab" * 12), "traceId must be 32 hex digits"),
    (one_span(spanId="zz" * 8), "spanId is not hex"),
    (one_span(spanId="ab cd ef 0123 45"), "spanId is not hex"),
    (one_span(parentSpanId=12), "parentSpanId must be a hex string"),
    (one_span(name=5), "name must be a string"),
    (one_span(kind=True), "kind must be an integer"),
    (one_span(kind="SERVER"), "unknown kind 'SERVER'"),
    (one_span(status={"code": "ERROR"}), "unknown status code 'ERROR'"),
    (one_span(startTimeUnixNano=1.5e18), "must be a decimal string or an integer"),
    (one_span(startTimeUnixNano="-5"), "must be decimal digits"),
    (one_span(startTimeUnixNano=""), "must be decimal digits"),
    (one_span(endTimeUnixNano=-1), "endTimeUnixNano is out of range"),
    (one_span(endTimeUnixNano=str(2**63)), "endTimeUnixNano is out of range"),
    (one_span(endTimeUnixNano=2**64 - 1), "endTimeUnixNano is out of range"),
    (one_span(startTimeUnixNano="9" * 5000), "startTimeUnixNano is out of range"),
    (one_span(attributes={"peer.service": "a"}, kind=3), "'attributes' must be a list"),
    (one_span(attributes=[["peer.service", "a"]], kind=3),
     "malformed attributes: expected an object"),
])
def test_bad_json_raises_bad_message(value: bytes | None, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason) as caught:
        decode_otlp_json(value, max_bytes=50 if "limit" in reason else 1 << 20)
    assert "\n" not in str(caught.value)


def test_a_unknown_enum_integer_is_read_as_unspecified() -> None:
    batch = decode_otlp_json(one_span(kind=9, status={"code": 7}))
    assert batch.kind == ["UNSPECIFIED"] and batch.error.tolist() == [False]


def test_bad_protobuf_raises_bad_message() -> None:
    with pytest.raises(BadMessage, match="message has no value"):
        decode_otlp_proto(None)
    with pytest.raises(BadMessage, match="over the 4-byte limit"):
        decode_otlp_proto(b"12345", max_bytes=4)
    with pytest.raises(BadMessage, match="not an OTLP protobuf ExportTraceServiceRequest"):
        decode_otlp_proto(b"\x0a\xff\xff\xff")  # field 1, a length past the end
    with pytest.raises(BadMessage, match="not an OTLP protobuf ExportTraceServiceRequest"):
        decode_otlp_proto(one_span())  # JSON is not protobuf
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 3, "short id"
    with pytest.raises(BadMessage, match="span 0: span_id must be 8 bytes, got 3"):
        decode_otlp_proto(request.SerializeToString())
    span.span_id, span.start_time_unix_nano = b"\x02" * 8, 2**64 - 1
    with pytest.raises(BadMessage, match="out of range"):
        decode_otlp_proto(request.SerializeToString())


# -- properties ----------------------------------------------------------------------------

OTLP_KEYS = ["resourceSpans", "resource", "attributes", "key", "value", "stringValue",
             "scopeSpans", "spans", "traceId", "spanId", "parentSpanId", "name", "kind",
             "startTimeUnixNano", "endTimeUnixNano", "status", "code"]
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
                | st.sampled_from(["ab" * 16, "cd" * 8, "0" * 32, "123", "peer.service",
                                   "service.name", "SPAN_KIND_CLIENT"]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(OTLP_KEYS) | st.text(max_size=6), inner, max_size=5),
    max_leaves=40)


def decodes_or_bad_message(value: bytes) -> None:
    try:
        batch = decode_otlp_json(value)
    except BadMessage as exc:
        assert "\n" not in str(exc)
    else:
        rows(batch)  # columns of one length and the documented types
        edges(batch)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_json_decoder_raises_only_bad_message_on_any_bytes(value: bytes) -> None:
    decodes_or_bad_message(value)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_json_decoder_raises_only_bad_message_on_any_json(doc: Any) -> None:
    decodes_or_bad_message(orjson.dumps(doc))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    children = (node.items() if isinstance(node, dict)
                else enumerate(node) if isinstance(node, list) else ())
    for key, child in children:
        yield from _paths(child, (*path, key))


@pytest.fixture(scope="module")
def valid_doc(sdk_spans: list[ReadableSpan]) -> dict[str, Any]:
    return otlp_json_doc(sdk_spans)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_decoder_raises_only_bad_message_on_a_damaged_message(
        valid_doc: dict[str, Any], data: st.DataObject) -> None:
    """A real message with any one part replaced by any JSON value."""
    doc = copy.deepcopy(valid_doc)
    path = data.draw(st.sampled_from(list(_paths(doc))[1:]))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(json_values)
    decodes_or_bad_message(orjson.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_proto_decoder_raises_only_bad_message_on_any_bytes(value: bytes) -> None:
    try:
        batch = decode_otlp_proto(value)
    except BadMessage:
        return
    rows(batch)
