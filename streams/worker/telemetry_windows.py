"""Turn batches of telemetry messages into GPU and host windows and infrastructure alerts,
checkpointed per partition.

Like :class:`~driftline.streams.worker.feature_windows.FeatureWindowProcessor`, one call of
:meth:`TelemetryWindowProcessor.process` handles what Faust buffered, partition by
partition, as one step that is retried from the last checkpoint until ClickHouse and Kafka
take it: keep each offset once and skip those at or below the checkpoint's applied offset
(a replay after a crash); decode (bad messages become dead letters); apply to the partition's
:class:`~driftline.models.telemetry.partition.TelemetryPartition`, which closes and judges windows;
write rows (``gpu_windows``, ``host_windows``, late samples, alerts, dead letters), send
alerts and dead letters to their topics; checkpoint into the ``window_states`` table under
``telemetry-<partition>`` and wait for it. Faust acks only after that, so a committed
offset always lies inside a durable checkpoint.

The telemetry topic has as many partitions as the predictions topic, so partition p of
both, and of the ``window_states`` changelog, go to the same worker.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence, Set

import faust
from faust.types import EventT, TableT

from driftline.models.alerting.rules import RulesConfig
from driftline.models.events.wire import BadMessage
from driftline.models.telemetry.partition import TelemetryPartition, TelemetryResult
from driftline.models.telemetry.sample import TelemetrySample
from driftline.models.telemetry.windows import (
    TelemetryConfig,
    TelemetryMessage,
    decode_telemetry_message,
)
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.sinks.telemetry_store import TelemetryStore
from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.batches import applied_through
from driftline.streams.worker.checkpoint import Checkpointer, WriteRows
from driftline.streams.worker.commits import DurableOffsets
from driftline.streams.worker.feature_windows import patience
from driftline.streams.worker.idle import Backlog, IdleWatch
from driftline.streams.worker.retry import PartitionSteps

log = logging.getLogger(__name__)

_PREFIX = "telemetry-"


def telemetry_config(settings: Settings) -> TelemetryConfig:
    return TelemetryConfig(window_ms=settings.window_ms,
                           allowed_lateness_ms=settings.allowed_lateness_ms)


class TelemetryStats:
    """Running totals since the worker started, for logs."""

    def __init__(self) -> None:
        self.messages = 0
        self.samples = 0
        self.dead_letters = 0
        self.late_samples = 0
        self.gpu_windows = 0
        self.host_windows = 0
        self.alerts = 0
        self.replayed_messages = 0
        self.repeated_offsets = 0
        self.skipped_offsets = 0
        self.rereads = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class TelemetryWindowProcessor:
    def __init__(self, settings: Settings, table: TableT[bytes, bytes],
                 dead_letter_topic: faust.TopicT, alerts_topic: faust.TopicT,
                 write_rows: WriteRows, rules: RulesConfig) -> None:
        self.settings = settings
        self.config = telemetry_config(settings)
        self.rules = rules
        self.table = table
        self.checkpointer = Checkpointer(table, dead_letter_topic, alerts_topic, write_rows,
                                         settings.max_message_bytes)
        #: Writes gpu_windows and host_windows; set once the worker's services start.
        self.store: TelemetryStore | None = None
        self.stats = TelemetryStats()
        self._states: dict[int, TelemetryPartition] = {}
        self.idle = IdleWatch(settings.idle_close_seconds, _PREFIX)
        self.backlog = Backlog()
        #: What the consumer commits (one per worker, shared with the feature processor).
        self.offsets = DurableOffsets()
        self.steps = PartitionSteps(patience(settings), self._states, "telemetry")
        self.gaps = batches.Gaps()
        self._reread_from: dict[int, int | None] = {}

    async def process(self, events: Sequence[EventT[bytes]]) -> None:
        runs, repeats = batches.by_partition(events)
        self.stats.repeated_offsets += repeats
        for partition, run in runs.items():
            await self.steps.run(partition,
                                 functools.partial(self._process_partition, partition, run))
            # A hole in the run: what precedes it is durable now, read the rest again.
            reread_from = self._reread_from.pop(partition, None)
            if reread_from is not None:
                self.stats.rereads += 1
                await self.offsets.reread(self.settings.telemetry_topic, partition, reread_from)

    async def _process_partition(self, partition: int, events: list[EventT[bytes]]) -> None:
        state = self._state(partition)
        fresh = batches.after(events, state.windows.applied_offset)
        self.stats.replayed_messages += len(events) - len(fresh)
        fresh, self._reread_from[partition] = self.gaps.split(
            self.settings.telemetry_topic, partition, fresh, state.windows.applied_offset,
            self.offsets.can_reread)
        if not fresh:
            return
        self.stats.skipped_offsets += batches.skipped(fresh, state.windows.applied_offset)
        batch = SinkBatch(revision=fresh[-1].message.offset, partition=partition)
        messages = self._decode(fresh, batch)
        result = state.apply(messages)
        state.windows.applied_offset = max(state.windows.applied_offset, batch.revision)
        batch.late, batch.alerts = result.late, result.alerts
        await self._make_durable(partition, state, batch, result)
        self._count(messages, batch, result, len(fresh))
        now = time.monotonic()
        for _, message in messages:
            self.idle.seen(partition, message.host, now)

    def _decode(self, events: list[EventT[bytes]],
                batch: SinkBatch) -> list[tuple[int, TelemetryMessage]]:
        messages: list[tuple[int, TelemetryMessage]] = []
        for event in events:
            m = event.message
            try:
                messages.append((m.offset, decode_telemetry_message(
                    m.key, m.value, self.settings.max_message_bytes)))
            except BadMessage as exc:
                batch.dead_letters.append(DeadLetter(m.topic, m.partition, m.offset, str(exc),
                                                     m.key, m.value))
        return messages

    async def _make_durable(self, partition: int, state: TelemetryPartition, batch: SinkBatch,
                            result: TelemetryResult) -> None:
        if result.gpu_rows or result.host_rows:
            if self.store is None:
                raise RuntimeError("TelemetryWindowProcessor.store is not set: start the "
                                   "worker services before processing")
            await self.store.write(result.gpu_rows, result.host_rows, batch.revision)
        await self.checkpointer.commit(partition, [(f"{_PREFIX}{partition}".encode(),
                                                    state.to_bytes())], batch)
        self.offsets.applied(self.settings.telemetry_topic, partition,
                             state.windows.applied_offset)

    def _count(self, messages: list[tuple[int, TelemetryMessage]], batch: SinkBatch,
               result: TelemetryResult, fresh: int) -> None:
        self.stats.messages += fresh
        self.stats.samples += sum(isinstance(m, TelemetrySample) for _, m in messages)
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.late_samples += len(result.late)
        self.stats.gpu_windows += len(result.gpu_rows)
        self.stats.host_windows += len(result.host_rows)
        self.stats.alerts += len(result.alerts)
        if batch.dead_letters:
            log.warning("%d telemetry message(s) sent to %s, first: %s",
                        len(batch.dead_letters), self.settings.dead_letter_topic,
                        batch.dead_letters[0].reason)

    def _state(self, partition: int) -> TelemetryPartition:
        state = self._states.get(partition)
        if state is None:
            stored = self.table.data.get(f"{_PREFIX}{partition}".encode())
            state = (TelemetryPartition.new(self.config, self.rules) if stored is None else
                     TelemetryPartition.from_bytes(stored, self.config, self.rules))
            log.info("telemetry partition %d: state loaded from its checkpoint (%s)",
                     partition, applied_through(state.windows.applied_offset))
            self.offsets.applied(self.settings.telemetry_topic, partition,
                                 state.windows.applied_offset)
            self.idle.loaded(partition, list(state.windows.event_time))
            self._states[partition] = state
        return state

    def forget(self, partitions: set[int]) -> None:
        """Drop cached state of revoked partitions; their next owner reads the checkpoint."""
        for partition in partitions:
            self._states.pop(partition, None)
        self.steps.revoked(partitions)
        self.idle.forget(partitions)
        self.backlog.forget(partitions)
        self.offsets.forget(self.settings.telemetry_topic, partitions)
        self.gaps.forget(self.settings.telemetry_topic, partitions)
        for partition in partitions:
            self._reread_from.pop(partition, None)

    def idle_watermarks(self, now: float | None = None) -> list[tuple[int, str, int]]:
        """(partition, host, event time) to send for quiet hosts that have open windows."""
        now = time.monotonic() if now is None else now
        self.idle.adopt_restored(self.table.data, self._states, self._state)

        def closing_time(partition: int, source: str) -> int | None:
            state = self._states.get(partition)
            return None if state is None else state.windows.idle_watermark(source)

        def caught_up(partitions: Set[int]) -> Set[int]:
            return self.backlog.caught_up(
                partitions, lambda p: self._state(p).windows.applied_offset)

        return self.idle.due(now, closing_time, caught_up)
