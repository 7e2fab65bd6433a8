"""Pipelines from OpenLineage: forward run events re-keyed by job, then judge each job's
runs per partition, checkpointed like every other processor.

The OpenLineage topic belongs to the pipelines that write it (any partition count, keyed by
their transport's choice), so the worker only reads it: :func:`forward` decodes each event
and writes it to driftline's own pipelines topic keyed by ``<namespace>/<job>``, so a job's
runs meet on one partition in order (at least once: an event forwarded twice counts once).
:class:`PipelineProcessor` applies that topic to a
:class:`~driftline.models.lineage.pipelines.PipelinePartition` per partition: write the runs
and closed windows, send the alerts, checkpoint under ``pipelines-<partition>``, then ack.
The worker's idle timer writes the wall clock into a quiet partition as a watermark, so a
run that never came is noticed, and a replay reads the same watermarks.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from faust.types import EventT, TableT

from driftline.models import state_codec
from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import BadMessage, load_json
from driftline.models.lineage.events import RunEvent, decode_run_event
from driftline.models.lineage.pipelines import PipelinePartition, job_key
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.sinks.pipeline_store import PipelineStore
from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.commits import DurableOffsets
from driftline.streams.worker.feature_windows import patience
from driftline.streams.worker.retry import PartitionSteps

log = logging.getLogger(__name__)

_PREFIX = "pipelines-"


def forwarded(event: EventT[bytes], max_bytes: int) -> tuple[bytes, bytes]:
    """(key, value) to forward an OpenLineage message as; :class:`BadMessage` if unreadable."""
    value = event.message.value
    if value is not None and len(value) > max_bytes:
        raise BadMessage(f"message is {len(value)} bytes, over the {max_bytes}-byte limit")
    run = decode_run_event(value or b"")
    return (job_key(run.job_namespace, run.job_name).encode(),
            orjson.dumps({"type": "run", **dataclasses.asdict(run)}))


def dead_letter(event: EventT[bytes], reason: str) -> DeadLetter:
    m = event.message
    return DeadLetter(m.topic, m.partition, m.offset, reason, m.key, m.value)


def read_item(value: bytes | None) -> RunEvent | int:
    """A pipelines-topic message: a forwarded run event, or a watermark's event time."""
    doc = load_json(value, 1 << 24)
    if doc.get("type") == "watermark":
        return int(doc["event_time"])
    fields = {k: v for k, v in doc.items() if k != "type"}
    for name in ("inputs", "outputs"):
        fields[name] = tuple(tuple(d) for d in fields[name])
    return RunEvent(**fields)


class PipelineProcessor:
    def __init__(self, settings: Settings, table: TableT[bytes, bytes],
                 checkpointer: Checkpointer, rules: RulesConfig) -> None:
        self.settings = settings
        self.table = table
        self.checkpointer = checkpointer
        self.rules = rules
        self.store: PipelineStore | None = None
        self.offsets = DurableOffsets()
        self._states: dict[int, PipelinePartition] = {}
        self.steps = PartitionSteps(patience(settings), self._states, "pipelines")
        self._seen: dict[int, float] = {}  # partition -> monotonic time of its last message
        self.runs = 0
        self.alerts = 0

    async def process(self, events: Sequence[EventT[bytes]]) -> None:
        runs, _ = batches.by_partition(events)
        for partition, run in runs.items():
            await self.steps.run(partition, functools.partial(self._step, partition, run))
            self._seen[partition] = time.monotonic()

    async def _step(self, partition: int, events: list[EventT[bytes]]) -> None:
        state = self._state(partition)
        items: list[tuple[int, Any]] = []
        for event in batches.after(events, state.applied_offset):
            try:
                items.append((event.message.offset, read_item(event.message.value)))
            except (BadMessage, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping pipelines message at offset %d: %s",
                            event.message.offset, exc)
                items.append((event.message.offset, state.clock))  # keeps the offset moving
        if not items:
            return
        result = state.apply(items)
        if self.store is None:
            raise RuntimeError("PipelineProcessor.store is not set: start the worker services "
                               "before processing")
        await self.store.write(result.runs, result.windows)
        batch = SinkBatch(revision=state.applied_offset, partition=partition,
                          alerts=result.alerts)
        await self.checkpointer.commit(partition, [(f"{_PREFIX}{partition}".encode(),
                                                    state_codec.encode(state.to_state()))],
                                       batch)
        self.offsets.applied(self.settings.pipelines_topic, partition, state.applied_offset)
        self.runs += len(result.runs)
        self.alerts += len(result.alerts)

    def _state(self, partition: int) -> PipelinePartition:
        state = self._states.get(partition)
        if state is None:
            stored = self.table.data.get(f"{_PREFIX}{partition}".encode())
            window_ms, lateness = self.settings.window_ms, self.settings.allowed_lateness_ms
            state = (PipelinePartition(self.rules, window_ms, lateness) if stored is None else
                     PipelinePartition.from_state(state_codec.decode(stored), self.rules,
                                                  window_ms, lateness))
            self.offsets.applied(self.settings.pipelines_topic, partition,
                                 state.applied_offset)
            self._states[partition] = state
        return state

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._states.pop(partition, None)
            self._seen.pop(partition, None)
        self.steps.revoked(partitions)
        self.offsets.forget(self.settings.pipelines_topic, partitions)

    def assigned(self, partitions: set[int], now: float | None = None) -> None:
        """Partitions given to this worker: quiet ones get watermarks too, even if nothing
        arrives on them again (the job that stopped running is exactly that)."""
        now = time.monotonic() if now is None else now
        for partition in partitions:
            self._seen.setdefault(partition, now)

    def quiet(self, now: float | None = None) -> list[int]:
        """Partitions this worker holds that have read nothing for ``idle_close_seconds``,
        and at most once a window (a watermark read back counts as reading)."""
        now = time.monotonic() if now is None else now
        wait = max(self.settings.idle_close_seconds, self.settings.window_seconds)
        return [p for p, seen in self._seen.items() if now - seen >= wait]
