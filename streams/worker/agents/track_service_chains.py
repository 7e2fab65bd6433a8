"""Agents: OpenTelemetry traces topic -> driftline's service-chains topic (summed per
service) -> operation and hop windows and chain alerts (the work is in
:mod:`driftline.streams.worker.service_chains`)."""

from __future__ import annotations

import logging

import faust
from faust.types import TableT

from driftline.sinks.chain_store import ChainStore
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.feature_windows import load_rules
from driftline.streams.worker.rekeyed import attach_rekeyed
from driftline.streams.worker.service_chains import ChainProcessor, forwarder
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: TableT[bytes, bytes], services: WorkerServices) -> ChainProcessor:
    checkpointer = Checkpointer(window_states, topics.dead_letters, topics.alerts,
                                services.sink.write, settings.max_message_bytes)
    processor = ChainProcessor(settings, window_states, checkpointer, load_rules(settings),
                               topics.service_hops)

    def started() -> None:
        processor.store = ChainStore(services.sink.client, settings.clickhouse_database)

    checkpointer.metrics, checkpointer.name = services.metrics, "service_chains"
    attach_rekeyed(app, settings, "service_chains", topics.traces,
                            topics.service_chains, forwarder(settings), processor, services,
                            started)

    @app.timer(interval=10.0, name="log_service_chain_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("service chains: %d messages forwarded, %d dead letters; %d windows, "
                 "%d late spans, %d alerts", processor.forwarded, processor.dead_lettered,
                 processor.rows, processor.late, processor.alerts)

    return processor
