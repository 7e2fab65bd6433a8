"""Service chains from OpenTelemetry spans: forward each traces message summed per service,
then merge and judge each service's operations and outgoing hops per partition (the flow of
:mod:`driftline.streams.worker.rekeyed`).

:func:`forwarder` decodes a message in the configured encoding (``otlp_proto`` or
``otlp_json``), sums its spans per owning service and window
(:func:`~driftline.models.traces.hops.partials`) and forwards each service's part keyed by
the service, tagged with its source offset so a part forwarded twice is applied once.
:class:`ChainProcessor` applies them to a
:class:`~driftline.models.traces.hops.HopPartition` per partition, checkpointed under
``chains-<partition>``, writes ``service_operations`` and ``service_calls``, and publishes
each service's judged hops to the compacted hops topic, from which every worker explains a
model's latency alert (:class:`~driftline.streams.worker.hop_board.HopBoard`).
"""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.types import EventT, TableT

from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import load_json
from driftline.models.traces.explain import board_records
from driftline.models.traces.hops import HopPartition, HopResult, Part, partials
from driftline.models.traces.spans import decode_otlp_json, decode_otlp_proto
from driftline.sinks.chain_store import ChainStore
from driftline.sinks.clickhouse import SinkBatch
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.rekeyed import Forward, RekeyedProcessor


def forwarder(settings: Settings) -> Forward:
    """Source message -> one message per service its spans belong to."""
    decode = decode_otlp_proto if settings.traces_encoding == "otlp_proto" else decode_otlp_json

    def forward(event: EventT[bytes]) -> list[tuple[bytes, bytes]]:
        m = event.message
        batch = decode(m.value, settings.max_message_bytes)
        source = f"{m.topic}/{m.partition}"
        return [(service.encode(), orjson.dumps(
                    {"type": "spans", **Part(source, m.offset, service, latest,
                                             tuple(parts)).to_state()},
                    option=orjson.OPT_SERIALIZE_NUMPY))
                for service, (latest, parts) in partials(
                    batch, settings.window_ms, settings.quantile_relative_accuracy).items()]

    return forward


def read_item(value: bytes | None) -> Part | int:
    """A service-chains message: a forwarded part, or a watermark's event time."""
    doc = load_json(value, 1 << 24)
    if doc.get("type") == "watermark":
        return int(doc["event_time"])
    return Part.from_state(doc)


class ChainProcessor(RekeyedProcessor[HopPartition]):
    prefix = "chains-"

    def __init__(self, settings: Settings, table: TableT[bytes, bytes],
                 checkpointer: Checkpointer, rules: RulesConfig,
                 hops_topic: faust.TopicT) -> None:
        super().__init__(settings, settings.service_chains_topic, table, checkpointer)
        self.rules = rules
        self.hops_topic = hops_topic
        self.model_of = {o.service: model for model, o in settings.models.items() if o.service}
        self.store: ChainStore | None = None
        self.rows = 0
        self.late = 0
        self.alerts = 0

    def new_state(self) -> HopPartition:
        return HopPartition(self.rules, self.settings.window_ms,
                            self.settings.allowed_lateness_ms, self.model_of)

    def restore(self, stored: dict[str, Any]) -> HopPartition:
        return HopPartition.from_state(stored, self.rules, self.settings.window_ms,
                                       self.settings.allowed_lateness_ms, self.model_of)

    def read_item(self, value: bytes | None) -> Part | int:
        return read_item(value)

    def watermark_every(self) -> float:
        # A watermark here only closes what is open (HopPartition), as the idle close of
        # every other window does: no need to wait a whole window of wall clock.
        return self.settings.idle_close_seconds

    def wants_watermark(self, partition: int) -> bool:
        return bool(self._state(partition).windows)

    async def write(self, partition: int, state: HopPartition, result: HopResult) -> SinkBatch:
        if self.store is None:
            raise RuntimeError("ChainProcessor.store is not set: start the worker services "
                               "before processing")
        await self.store.write(result.rows)
        sent = [await self.hops_topic.send(key=service.encode(), value=orjson.dumps(
                    {"service": service, "hops": hops}))
                for service, hops in board_records(result.rows).items()]
        for future in sent:
            await future
        self.rows += len(result.rows)
        self.late += result.late
        self.alerts += len(result.alerts)
        return SinkBatch(revision=state.applied_offset, partition=partition,
                         alerts=result.alerts)
