"""Pipelines from OpenLineage: forward run events re-keyed by job, then judge each job's
runs per partition (the flow of :mod:`driftline.streams.worker.rekeyed`).

:func:`forwarded` decodes each event and writes it to driftline's own pipelines topic keyed
by ``<namespace>/<job>``, so a job's runs meet on one partition in order (at least once: an
event forwarded twice counts once). :class:`PipelineProcessor` applies that topic to a
:class:`~driftline.models.lineage.pipelines.PipelinePartition` per partition, checkpointed
under ``pipelines-<partition>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from faust.types import EventT, TableT

from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import load_json
from driftline.models.lineage.events import RunEvent, decode_run_event
from driftline.models.lineage.pipelines import PipelinePartition, PipelineResult, job_key
from driftline.sinks.clickhouse import SinkBatch
from driftline.sinks.pipeline_store import PipelineStore
from driftline.streams.settings import Settings
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.rekeyed import RekeyedProcessor


def forwarded(event: EventT[bytes]) -> list[tuple[bytes, bytes]]:
    """The message to forward an OpenLineage message as; :class:`BadMessage` if unreadable."""
    run = decode_run_event(event.message.value or b"")
    return [(job_key(run.job_namespace, run.job_name).encode(),
             orjson.dumps({"type": "run", **dataclasses.asdict(run)}))]


def read_item(value: bytes | None) -> RunEvent | int:
    """A pipelines-topic message: a forwarded run event, or a watermark's event time."""
    doc = load_json(value, 1 << 24)
    if doc.get("type") == "watermark":
        return int(doc["event_time"])
    fields = {k: v for k, v in doc.items() if k != "type"}
    for name in ("inputs", "outputs"):
        fields[name] = tuple(tuple(d) for d in fields[name])
    return RunEvent(**fields)


class PipelineProcessor(RekeyedProcessor[PipelinePartition]):
    prefix = "pipelines-"

    def __init__(self, settings: Settings, table: TableT[bytes, bytes],
                 checkpointer: Checkpointer, rules: RulesConfig) -> None:
        super().__init__(settings, settings.pipelines_topic, table, checkpointer)
        self.rules = rules
        self.store: PipelineStore | None = None
        self.runs = 0
        self.alerts = 0

    def new_state(self) -> PipelinePartition:
        return PipelinePartition(self.rules, self.settings.window_ms,
                                 self.settings.allowed_lateness_ms)

    def restore(self, stored: dict[str, Any]) -> PipelinePartition:
        return PipelinePartition.from_state(stored, self.rules, self.settings.window_ms,
                                            self.settings.allowed_lateness_ms)

    def read_item(self, value: bytes | None) -> RunEvent | int:
        return read_item(value)

    async def write(self, partition: int, state: PipelinePartition,
                    result: PipelineResult) -> SinkBatch:
        if self.store is None:
            raise RuntimeError("PipelineProcessor.store is not set: start the worker services "
                               "before processing")
        await self.store.write(result.runs, result.windows)
        self.runs += len(result.runs)
        self.alerts += len(result.alerts)
        return SinkBatch(revision=state.applied_offset, partition=partition,
                         alerts=result.alerts)
