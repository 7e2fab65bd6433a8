"""The demo's service chain: a model's serving traced with the OpenTelemetry SDK, as an
instrumented service would be, and each batch of finished spans encoded by the SDK's own
OTLP exporter code into what the Collector's Kafka exporter writes (``otlp_proto``).

Each request is a SERVER span ``predict`` of the model's service with two CLIENT calls
under it: ``GET /features`` to the feature store (``peer.service``; the store's own SERVER
span is its child) and ``SELECT history`` to postgres (a database emits no spans of its
own). While the model is slow, the feature store is the reason: its calls take six times
as long and a few time out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

__all__ = ["DATABASE", "FEATURE_STORE", "ChainTracer", "DemoTraces", "ServiceTracer"]

FEATURE_STORE = "feature-store"
DATABASE = "postgres"
_MS = 1_000_000  # nanoseconds


class ServiceTracer:
    """One service's tracer (the real SDK), exporting finished spans to memory."""

    def __init__(self, name: str) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("driftline.demo", "1.0")

    def take(self) -> list[ReadableSpan]:
        """The spans finished since the last take."""
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


class ChainTracer:
    """Records ``service``'s requests with the SDK; :meth:`record` returns one message."""

    def __init__(self, service: str, seed: int = 11) -> None:
        self.service = service
        self.rng = np.random.default_rng(seed)
        self.model = ServiceTracer(service)
        self.store = ServiceTracer(FEATURE_STORE)
        self.calls = 0  # calls to each of the two hops recorded so far
        self.timeouts = 0  # of the calls to the feature store

    def record(self, start_ms: int, end_ms: int, n: int, slow: bool = False) -> bytes:
        """``n`` requests starting in ``[start_ms, end_ms)``, as one OTLP protobuf message."""
        rng = self.rng
        starts = np.sort(rng.integers(start_ms, end_ms, n)) * _MS
        fetch_ms = rng.gamma(4.0, 2.0, n) * (6.0 if slow else 1.0)
        query_ms = rng.gamma(3.0, 1.0, n)
        compute_ms = rng.gamma(4.0, 2.0, n)
        timeouts = rng.random(n) < (0.02 if slow else 0.0)
        for i in range(n):
            self._request(int(starts[i]), float(fetch_ms[i]), float(query_ms[i]),
                          float(compute_ms[i]), bool(timeouts[i]))
        self.calls += n
        self.timeouts += int(timeouts.sum())
        return bytes(encode_spans(self.model.take() + self.store.take()).SerializeToString())

    def _request(self, t: int, fetch_ms: float, query_ms: float, compute_ms: float,
                 timeout: bool) -> None:
        def under(span: trace.Span) -> Any:
            return trace.set_span_in_context(span)

        model, store = self.model.tracer, self.store.tracer
        predict = model.start_span("predict", kind=SpanKind.SERVER, start_time=t)
        at = t + _MS // 2
        fetch = model.start_span("GET /features", context=under(predict), kind=SpanKind.CLIENT,
                                 start_time=at, attributes={"peer.service": FEATURE_STORE})
        serve = store.start_span("get_features", context=under(fetch), kind=SpanKind.SERVER,
                                 start_time=at + _MS // 10)
        fetched = at + int(fetch_ms * _MS)
        if timeout:
            for span in (fetch, serve):
                span.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
        serve.end(end_time=fetched - _MS // 10)
        fetch.end(end_time=fetched)
        query = model.start_span("SELECT history", context=under(predict), kind=SpanKind.CLIENT,
                                 start_time=fetched, attributes={"peer.service": DATABASE,
                                                                 "db.system": "postgresql"})
        queried = fetched + int(query_ms * _MS)
        query.end(end_time=queried)
        predict.end(end_time=queried + int(compute_ms * _MS))


class DemoTraces:
    """Traces of ``service``, sent on each tick of the demo's traffic."""

    def __init__(self, settings: Settings, service: str, tick_ms: int,
                 requests_per_tick: int = 10) -> None:
        self.settings = settings
        self.tracer = ChainTracer(service)
        self.tick_ms = tick_ms
        self.requests_per_tick = requests_per_tick
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                          **kafka_client_options(self.settings))
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def tick(self, event_time_ms: int, slow: bool) -> None:
        if self._producer is None:
            raise RuntimeError("DemoTraces.start() has not run")
        message = self.tracer.record(event_time_ms, event_time_ms + self.tick_ms,
                                     self.requests_per_tick, slow)
        await self._producer.send_and_wait(self.settings.traces_topic, message)
