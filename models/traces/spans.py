"""Decode one Kafka message of OpenTelemetry traces into columns of spans.

The OpenTelemetry Collector's Kafka exporter writes one OTLP ``ExportTraceServiceRequest``
per message (resourceSpans -> scopeSpans -> spans), in either of two encodings:

* ``otlp_proto``: the protobuf wire form, read by :func:`decode_otlp_proto` with the
  official definitions of the ``opentelemetry-proto`` package (imported on first use, so
  this module loads without it);
* ``otlp_json``: the OTLP/JSON form (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding),
  read by :func:`decode_otlp_json`: the proto3 JSON mapping with lowerCamelCase keys, but
  trace and span ids as case-insensitive *hex* strings (not base64) and enums as integers;
  64-bit times are decimal strings (numbers are accepted too). Unknown keys are ignored,
  as the specification requires; enum names (``"SPAN_KIND_SERVER"``), which protobuf's own
  JSON printer writes by default, are accepted as well.

Both give a :class:`SpanBatch`: one entry per span in every column, strings as lists and
numbers as numpy arrays, so a later stage counts and aggregates per batch. A message that
cannot be read (not JSON or not protobuf, a container or a field of the wrong type, an id
that is not 16 or 8 bytes of hex, a negative or non-integer time) raises
:class:`~driftline.models.events.wire.BadMessage` with a one-line reason. A span whose
trace or span id is empty or all zeros is invalid by the OTLP definition but well formed:
it is dropped and counted in :attr:`SpanBatch.dropped`, and the message's other spans kept.

:func:`edges` resolves calls between services (caller -> callee) within one batch, and
:func:`parent_services` gives each span its parent span's service.

>>> doc = {"resourceSpans": [{
...     "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ranker"}}]},
...     "scopeSpans": [{"spans": [
...         {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
...          "name": "rank", "kind": 2, "startTimeUnixNano": "1764230400000000000",
...          "endTimeUnixNano": "1764230400012500000"},
...         {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
...          "parentSpanId": "eee19b7ec3c1b174", "name": "GET /features", "kind": 3,
...          "startTimeUnixNano": "1764230400001000000", "endTimeUnixNano": "1764230400009000000",
...          "status": {"code": 2},
...          "attributes": [{"key": "peer.service", "value": {"stringValue": "feature-store"}}]},
...     ]}]}]}
>>> import orjson
>>> batch = decode_otlp_json(orjson.dumps(doc))
>>> len(batch), batch.service, batch.kind, batch.peer_service
(2, ['ranker', 'ranker'], ['SERVER', 'CLIENT'], ['', 'feature-store'])
>>> batch.start_ms.tolist(), batch.duration_ms.tolist(), batch.error.tolist()
([1764230400000, 1764230400001], [12.5, 8.0], [False, True])
>>> edges(batch)
[(1, 'ranker', 'feature-store')]
>>> decode_otlp_json(b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}')
Traceback (most recent call last):
...
driftline.models.events.wire.BadMessage: span 0: traceId must be 32 hex digits, got 'xyz'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.models.events.wire import BadMessage, load_json

#: The largest message either decoder reads, in bytes.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
#: Short names of the span kinds, indexed by the OTLP ``Span.SpanKind`` value.
KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
#: The resource attribute naming a span's service.
SERVICE_ATTRIBUTE = "service.name"
#: The attributes of a CLIENT span that name its callee, the first present winning.
PEER_ATTRIBUTES = ("peer.service", "server.address", "net.peer.name")

_CLIENT = 3
_STATUS_ERROR = 2
_TRACE_ID_DIGITS = 32
_SPAN_ID_DIGITS = 16
_ZERO_TRACE_ID = "0" * _TRACE_ID_DIGITS
_ZERO_SPAN_ID = "0" * _SPAN_ID_DIGITS
_PEER_RANK = {name: rank for rank, name in enumerate(PEER_ATTRIBUTES)}
_KIND_OF: dict[Any, str] = {**dict(enumerate(KINDS)),
                            **{f"SPAN_KIND_{name}": name for name in KINDS}}
_ERROR_OF: dict[Any, bool] = {0: False, 1: False, 2: True, "STATUS_CODE_UNSET": False,
                              "STATUS_CODE_OK": False, "STATUS_CODE_ERROR": True}
_INT_OR_STR: frozenset[type] = frozenset({int, str})
_NO_STATUS: dict[str, Any] = {}


@dataclasses.dataclass(slots=True, eq=False)
class SpanBatch:
    """The spans of one message as parallel columns, in the message's order.

    Ids are lowercase hex (``parent_span_id`` is ``""`` for a root span); ``service`` is the
    resource's ``service.name`` (``""`` if absent); ``kind`` one of :data:`KINDS`;
    ``peer_service`` the callee named by a CLIENT span's ``peer.service`` attribute, or else
    its ``server.address`` or ``net.peer.name`` (``""`` for other kinds and when absent).
    ``start_ms`` is epoch milliseconds (``start_time_unix_nano`` floored), ``duration_ms``
    end minus start as sent (a span without an end time has a negative one), ``error`` whether
    the span's status code is ERROR. ``dropped`` counts the spans left out for an empty or
    all-zero trace or span id.
    """

    trace_id: list[str]
    span_id: list[str]
    parent_span_id: list[str]
    service: list[str]
    name: list[str]
    kind: list[str]
    peer_service: list[str]
    start_ms: npt.NDArray[np.int64]
    duration_ms: npt.NDArray[np.float64]
    error: npt.NDArray[np.bool_]
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.span_id)


# -- OTLP/JSON -----------------------------------------------------------------------------


def decode_otlp_json(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> SpanBatch:
    """One ``otlp_json`` message as a :class:`SpanBatch`, or :class:`BadMessage`."""
    doc = load_json(value, max_bytes)
    if not isinstance(doc, dict):
        raise BadMessage(f"expected an OTLP/JSON object, got {type(doc).__name__}")
    if "resourceSpans" not in doc and "resource_spans" in doc:
        raise BadMessage("OTLP/JSON keys are lowerCamelCase: 'resourceSpans', not "
                         "'resource_spans'")
    spans: list[Any] = []
    services: list[str] = []
    try:
        for rs in _json_list(doc.get("resourceSpans"), "resourceSpans"):
            resource = rs.get("resource") or {}
            service = _json_string_attribute(resource.get("attributes"), SERVICE_ATTRIBUTE)
            for ss in _json_list(rs.get("scopeSpans"), "scopeSpans"):
                chunk = _json_list(ss.get("spans"), "spans")
                spans += chunk
                services += [service] * len(chunk)
    except (AttributeError, TypeError) as exc:
        raise BadMessage(f"malformed OTLP/JSON before span {len(spans)}: {_reason(exc)}"
                         [:300]) from None
    # A column at a time: a comprehension per field costs less than appends per span.
    try:
        trace_ids = [span.get("traceId", "") for span in spans]
    except AttributeError:
        i = next(i for i, span in enumerate(spans) if type(span) is not dict)
        raise BadMessage(f"span {i} is not an object: {spans[i]!r:.80}") from None
    span_ids = [span.get("spanId", "") for span in spans]
    parent_ids = [span.get("parentSpanId", "") for span in spans]
    names = [span.get("name", "") for span in spans]
    kinds = [span.get("kind", 0) for span in spans]
    starts = [span.get("startTimeUnixNano", 0) for span in spans]
    ends = [span.get("endTimeUnixNano", 0) for span in spans]
    try:
        codes = [(span.get("status") or _NO_STATUS).get("code", 0) for span in spans]
    except AttributeError:
        i = next(i for i, span in enumerate(spans) if type(span.get("status") or {}) is not dict)
        raise BadMessage(f"span {i}: status must be an object, got "
                         f"{spans[i]['status']!r:.80}") from None
    n = len(spans)
    peers = [""] * n
    for i, kind in enumerate(kinds):
        if kind == _CLIENT or kind == "SPAN_KIND_CLIENT":
            try:
                peers[i] = _json_peer(spans[i].get("attributes"))
            except (AttributeError, TypeError) as exc:
                raise BadMessage(f"span {i}: malformed attributes: {_reason(exc)}"
                                 [:300]) from None
    _check_types(names, frozenset({str}), "name", "a string")
    _check_types(kinds, _INT_OR_STR, "kind", "an integer")
    _check_types(codes, _INT_OR_STR, "status code", "an integer")
    return _assemble(
        _json_ids(trace_ids, _TRACE_ID_DIGITS, "traceId"),
        _json_ids(span_ids, _SPAN_ID_DIGITS, "spanId"),
        _json_ids(parent_ids, _SPAN_ID_DIGITS, "parentSpanId"),
        services, names, _enum(kinds, _KIND_OF, "UNSPECIFIED", "kind"),
        peers, _json_nanos(starts, "startTimeUnixNano"), _json_nanos(ends, "endTimeUnixNano"),
        np.array(_enum(codes, _ERROR_OF, False, "status code"), dtype=np.bool_))


def _reason(exc: AttributeError | TypeError) -> str:
    if isinstance(exc, AttributeError):
        return f"expected an object, got {type(exc.obj).__name__}"
    return str(exc)


def _json_list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise TypeError(f"'{field}' must be a list, got {type(value).__name__}")
    return value


def _json_string_attribute(attributes: Any, key: str) -> str:
    """The string value of attribute ``key`` in an OTLP/JSON KeyValue list, or ``""``."""
    for attribute in _json_list(attributes, "attributes"):
        if attribute.get("key") == key:
            return _json_string(attribute.get("value"))
    return ""


def _json_peer(attributes: Any) -> str:
    """The callee named by a CLIENT span's attributes (see :data:`PEER_ATTRIBUTES`)."""
    best, found = len(PEER_ATTRIBUTES), ""
    for attribute in _json_list(attributes, "attributes"):
        rank = _PEER_RANK.get(attribute.get("key"), best)
        if rank < best:
            value = _json_string(attribute.get("value"))
            if value:
                best, found = rank, value
    return found


def _json_string(value: Any) -> str:
    """An AnyValue's ``stringValue`` (``""`` when it holds another type)."""
    text = value.get("stringValue") if value else None
    return text if type(text) is str else ""


def _check_types(column: list[Any], allowed: frozenset[type], field: str, what: str) -> None:
    if not set(map(type, column)) <= allowed:
        i = next(i for i, v in enumerate(column) if type(v) not in allowed)
        raise BadMessage(f"span {i}: {field} must be {what}, got {column[i]!r:.80}")


def _enum(column: list[Any], names: Mapping[Any, Any], unknown: Any, field: str) -> list[Any]:
    """Enum values (integers, or their names) mapped through ``names``; an integer this
    version does not know (proto3 enums are open) maps to ``unknown``, a name to an error."""
    mapped = list(map(names.get, column))
    if None in mapped:
        for i, (value, name) in enumerate(zip(column, mapped, strict=True)):
            if name is None:
                if type(value) is not int:
                    raise BadMessage(f"span {i}: unknown {field} {value!r:.80}")
                mapped[i] = unknown
    return mapped


def _json_ids(ids: list[Any], digits: int, field: str) -> list[str]:
    """Hex ids checked (``digits`` hex digits or empty) and lowercased."""
    _check_types(ids, frozenset({str}), field, "a hex string")
    if not set(map(len, ids)) <= {digits, 0}:
        i = next(i for i, v in enumerate(ids) if len(v) not in (digits, 0))
        raise BadMessage(f"span {i}: {field} must be {digits} hex digits, got {ids[i]!r:.80}")
    joined = "".join(ids)
    if not _is_hex(joined):
        i = next(i for i, v in enumerate(ids) if not _is_hex(v))
        raise BadMessage(f"span {i}: {field} is not hex: {ids[i]!r:.80}")
    lower = joined.lower()
    return ids if lower == joined else [v.lower() for v in ids]


def _is_hex(text: str) -> bool:
    try:
        # fromhex skips whitespace: the length tells it was all digits.
        return 2 * len(bytes.fromhex(text)) == len(text)
    except ValueError:
        return False


def _json_nanos(values: list[Any], field: str) -> npt.NDArray[np.int64]:
    """Nanosecond times, sent as decimal strings or integers, as an int64 array."""
    types = set(map(type, values))
    if not types <= _INT_OR_STR:
        _check_types(values, _INT_OR_STR, field, "a decimal string or an integer")
    if str in types:
        texts = values if types == {str} else [v for v in values if type(v) is str]
        joined = "".join(texts)
        if not (all(texts) and joined.isascii() and joined.isdigit()):
            i = next(i for i, v in enumerate(values)
                     if type(v) is str and not (v.isascii() and v.isdigit()))
            raise BadMessage(f"span {i}: {field} must be decimal digits, got {values[i]!r:.80}")
    try:
        nanos = np.array(values, dtype=np.int64)
        if not len(nanos) or nanos.min() >= 0:
            return nanos
    except (OverflowError, ValueError):  # past int64; ValueError: past int()'s digit limit
        pass
    i = next(i for i, v in enumerate(values) if not _fits_int64(v))
    raise BadMessage(f"span {i}: {field} is out of range: {values[i]!r:.80}")


def _fits_int64(value: int | str) -> bool:
    # A time past 2262 (int64 nanoseconds) is as unreadable as a negative one.
    if type(value) is str:
        return len(value) <= 19 and int(value) < 2**63
    return 0 <= int(value) < 2**63


# -- OTLP protobuf -------------------------------------------------------------------------


def decode_otlp_proto(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES) -> SpanBatch:
    """One ``otlp_proto`` message (a serialized ``ExportTraceServiceRequest``) as a
    :class:`SpanBatch`, or :class:`BadMessage`."""
    if value is None:
        raise BadMessage("message has no value")
    if len(value) > max_bytes:
        raise BadMessage(f"message is {len(value)} bytes, over the {max_bytes}-byte limit")
    # Imported here: the JSON decoder, and this module, work without opentelemetry-proto.
    # protobuf ships no type information (its stubs are the separate types-protobuf); the
    # exception class is all that is taken from it here.
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped,unused-ignore]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(value)
    except DecodeError as exc:
        raise BadMessage(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    spans: list[Any] = []
    services: list[str] = []
    for rs in request.resource_spans:
        service = ""
        for attribute in rs.resource.attributes:
            if attribute.key == SERVICE_ATTRIBUTE:
                service = attribute.value.string_value
                break
        for ss in rs.scope_spans:
            spans += ss.spans
            services += [service] * len(ss.spans)
    kinds = [span.kind for span in spans]
    peers = [_proto_peer(span.attributes) if kind == _CLIENT else ""
             for span, kind in zip(spans, kinds, strict=True)]
    starts = [span.start_time_unix_nano for span in spans]
    ends = [span.end_time_unix_nano for span in spans]
    try:
        start_ns = np.array(starts, dtype=np.int64)
        end_ns = np.array(ends, dtype=np.int64)
    except OverflowError:  # a fixed64 past 2262 does not fit int64 nanoseconds
        i = next(i for i, times in enumerate(zip(starts, ends, strict=True))
                 if max(times) >= 2**63)
        raise BadMessage(f"span {i}: a time is out of range: {max(starts[i], ends[i])}") from None
    return _assemble(
        _proto_ids([span.trace_id for span in spans], _TRACE_ID_DIGITS // 2, "trace_id"),
        _proto_ids([span.span_id for span in spans], _SPAN_ID_DIGITS // 2, "span_id"),
        _proto_ids([span.parent_span_id for span in spans], _SPAN_ID_DIGITS // 2,
                   "parent_span_id"),
        services, [span.name for span in spans], _enum(kinds, _KIND_OF, "UNSPECIFIED", "kind"),
        peers, start_ns, end_ns,
        np.array([span.status.code for span in spans], dtype=np.int64) == _STATUS_ERROR)


def _proto_peer(attributes: Iterable[Any]) -> str:
    best, found = len(PEER_ATTRIBUTES), ""
    for attribute in attributes:
        rank = _PEER_RANK.get(attribute.key, best)
        if rank < best:
            value: str = attribute.value.string_value
            if value:
                best, found = rank, value
    return found


def _proto_ids(ids: list[bytes], size: int, field: str) -> list[str]:
    if not set(map(len, ids)) <= {size, 0}:
        i = next(i for i, v in enumerate(ids) if len(v) not in (size, 0))
        raise BadMessage(f"span {i}: {field} must be {size} bytes, got {len(ids[i])}")
    return [v.hex() for v in ids]


# -- both ----------------------------------------------------------------------------------


def _assemble(trace_ids: list[str], span_ids: list[str], parent_ids: list[str],
              services: list[str], names: list[str], kinds: list[str], peers: list[str],
              start_ns: npt.NDArray[np.int64], end_ns: npt.NDArray[np.int64],
              error: npt.NDArray[np.bool_]) -> SpanBatch:
    if _ZERO_SPAN_ID in parent_ids:  # an all-zero parent id is no parent
        parent_ids = ["" if p == _ZERO_SPAN_ID else p for p in parent_ids]
    batch = SpanBatch(trace_ids, span_ids, parent_ids, services, names, kinds, peers,
                      start_ns // 1_000_000, (end_ns - start_ns) / 1e6, error)
    if {"", _ZERO_TRACE_ID}.isdisjoint(trace_ids) and {"", _ZERO_SPAN_ID}.isdisjoint(span_ids):
        return batch
    keep = [i for i, (t, s) in enumerate(zip(trace_ids, span_ids, strict=True))
            if t and s and t != _ZERO_TRACE_ID and s != _ZERO_SPAN_ID]
    return _take(batch, keep, dropped=len(batch) - len(keep))


def _take(batch: SpanBatch, keep: list[int], dropped: int) -> SpanBatch:
    rows = np.array(keep, dtype=np.intp)

    def pick(column: list[str]) -> list[str]:
        return [column[i] for i in keep]

    return SpanBatch(pick(batch.trace_id), pick(batch.span_id), pick(batch.parent_span_id),
                     pick(batch.service), pick(batch.name), pick(batch.kind),
                     pick(batch.peer_service), batch.start_ms[rows], batch.duration_ms[rows],
                     batch.error[rows], dropped)


# -- calls between services ----------------------------------------------------------------


def parent_services(batch: SpanBatch) -> list[str]:
    """Each span's parent span's service, ``""`` for a root span and for a span whose parent
    is not in this batch: parents in another message are not joined (the Collector batches
    by time and by pipeline, so a trace's spans are often split across messages)."""
    service_of = dict(zip(zip(batch.trace_id, batch.span_id, strict=True), batch.service,
                          strict=True))
    get = service_of.get
    return [get((t, p), "") if p else ""
            for t, p in zip(batch.trace_id, batch.parent_span_id, strict=True)]


def edges(batch: SpanBatch) -> list[tuple[int, str, str]]:
    """The calls between services in this batch, as ``(span index, caller, callee)``.

    A CLIENT span naming its callee (:attr:`SpanBatch.peer_service`) is a call from its
    service to that callee, indexed by the client span (the caller's duration and error).
    Otherwise a span whose parent span, found in this batch, belongs to another service is
    a call from the parent's service to its own, indexed by the child span (the callee's
    view). The child of a CLIENT span that named its callee adds no second edge for the same
    call. Parents in another message are not joined: a call whose two sides arrive in
    different messages is found only through the client's ``peer_service``. Spans without
    a service name take part in no edge.
    """
    named = {(t, s) for t, s, k, p in zip(batch.trace_id, batch.span_id, batch.kind,
                                           batch.peer_service, strict=True)
             if p and k == "CLIENT"}
    found: list[tuple[int, str, str]] = []
    rows = zip(batch.trace_id, batch.parent_span_id, batch.service, batch.kind,
               batch.peer_service, parent_services(batch), strict=True)
    for i, (trace, parent, service, kind, peer, caller) in enumerate(rows):
        if not service:
            continue
        if peer and kind == "CLIENT":
            found.append((i, service, peer))
        elif caller and caller != service and (trace, parent) not in named:
            found.append((i, caller, service))
    return found
