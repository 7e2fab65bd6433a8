"""A standard's topic, forwarded re-keyed to a topic of driftline's own, then judged per
partition: the shape shared by pipelines (OpenLineage) and service chains (OpenTelemetry).

The source topic belongs to the systems that write it (any partition count, keyed by their
transport's choice), so the worker only reads it: a forwarder decodes each message and
writes what it says to driftline's own topic keyed so that what must meet (a job's runs, a
service's calls) lands on one partition, in order. A :class:`RekeyedProcessor` applies that
topic to a state per partition: write the rows, send the alerts, checkpoint under
``<prefix><partition>``, then ack. The worker's idle timer writes the wall clock into a
quiet partition as a watermark, so what did *not* happen (a run that never came) is
noticed, and a replay reads the same watermarks.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

import faust
import orjson
from faust import Stream
from faust.types import TP, EventT, StreamT, TableT
from mode.types.signals import BaseSignalT

from driftline.models import state_codec
from driftline.models.events.wire import BadMessage
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.checkpoint import Checkpointer
from driftline.streams.worker.commits import DurableOffsets
from driftline.streams.worker.feature_windows import patience
from driftline.streams.worker.idle import Backlog, consumer_highwater
from driftline.streams.worker.retry import PartitionSteps
from driftline.streams.worker.services import WorkerServices

log = logging.getLogger(__name__)

#: A source message -> the (key, value) messages to forward; BadMessage if unreadable.
Forward = Callable[[EventT[bytes]], list[tuple[bytes, bytes]]]


class PartitionState(Protocol):
    applied_offset: int
    clock: int

    def apply(self, items: Sequence[tuple[int, Any]]) -> Any: ...

    def to_state(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=PartitionState)


class RekeyedProcessor(Generic[S]):
    """Applies driftline's re-keyed topic ``topic``, one state per partition."""

    #: Checkpoint key prefix, e.g. ``"pipelines-"``.
    prefix = ""

    def __init__(self, settings: Settings, topic: str, table: TableT[bytes, bytes],
                 checkpointer: Checkpointer) -> None:
        self.settings = settings
        self.topic = topic
        self.table = table
        self.checkpointer = checkpointer
        self.offsets = DurableOffsets()
        self._states: dict[int, S] = {}
        self.steps = PartitionSteps(patience(settings), self._states, topic)
        self._seen: dict[int, float] = {}  # partition -> monotonic time of its last message
        #: Messages of the standard's topic forwarded, and sent to the dead-letter topic.
        self.forwarded = 0
        self.dead_lettered = 0
        self._stamped: dict[int, float] = {}  # partition -> when it was last given a watermark
        #: Silence counts only while this worker keeps up with the partition (see
        #: :class:`~driftline.streams.worker.idle.Backlog`): a step retrying behind a down
        #: sink, or a broker that does not answer, is not a quiet source.
        self.backlog = Backlog()

    # -- for subclasses -------------------------------------------------------------
    def new_state(self) -> S:
        raise NotImplementedError

    def restore(self, stored: dict[str, Any]) -> S:
        raise NotImplementedError

    def read_item(self, value: bytes | None) -> Any:
        """One message of the topic, for the state's ``apply``; an int is a watermark."""
        raise NotImplementedError

    async def write(self, partition: int, state: S, result: Any) -> SinkBatch:
        """Write ``result``'s rows; the batch (alerts) to publish with the checkpoint."""
        raise NotImplementedError

    # -- the loop ---------------------------------------------------------------------
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
                items.append((event.message.offset, self.read_item(event.message.value)))
            except (BadMessage, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping %s message at offset %d: %s", self.topic,
                            event.message.offset, exc)
                items.append((event.message.offset, state.clock))  # keeps the offset moving
        if not items:
            return
        result = state.apply(items)
        batch = await self.write(partition, state, result)
        await self.checkpointer.commit(partition, [(f"{self.prefix}{partition}".encode(),
                                                    state_codec.encode(state.to_state()))],
                                       batch)
        self.offsets.applied(self.topic, partition, state.applied_offset)

    def _state(self, partition: int) -> S:
        state = self._states.get(partition)
        if state is None:
            stored = self.table.data.get(f"{self.prefix}{partition}".encode())
            state = (self.new_state() if stored is None else
                     self.restore(state_codec.decode(stored)))
            self.offsets.applied(self.topic, partition, state.applied_offset)
            self._states[partition] = state
        return state

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._states.pop(partition, None)
            self._seen.pop(partition, None)
            self._stamped.pop(partition, None)
        self.backlog.forget(partitions)
        self.steps.revoked(partitions)
        self.offsets.forget(self.topic, partitions)

    def assigned(self, partitions: set[int], now: float | None = None) -> None:
        """Partitions given to this worker: quiet ones get watermarks too, even if nothing
        arrives on them again (the job that stopped running is exactly that)."""
        now = time.monotonic() if now is None else now
        for partition in partitions:
            self._seen.setdefault(partition, now)

    def quiet(self, now: float | None = None) -> list[int]:
        """Partitions to give a watermark now: this worker holds them, they have read
        nothing for ``idle_close_seconds`` (a watermark read back counts as reading), their
        last watermark is :meth:`watermark_every` seconds old, and :meth:`wants_watermark`."""
        now = time.monotonic() if now is None else now
        idle, every = self.settings.idle_close_seconds, self.watermark_every()
        ready = self.backlog.caught_up(set(self._seen), lambda p: self._state(p).applied_offset)
        for partition in self._seen.keys() - ready:
            self._seen[partition] = now  # behind: its silence counts afresh once caught up
        due = [p for p, seen in list(self._seen.items())
               if now - seen >= idle and now - self._stamped.get(p, -math.inf) >= every
               and self.wants_watermark(p)]
        for partition in due:
            self._stamped[partition] = now
        return due

    def watermark_every(self) -> float:
        """The least time between two watermarks of a quiet partition: a window, so its
        clock moves at most once a window."""
        return float(self.settings.window_seconds)

    def wants_watermark(self, partition: int) -> bool:
        return True


def dead_letter(event: EventT[bytes], reason: str) -> DeadLetter:
    m = event.message
    return DeadLetter(m.topic, m.partition, m.offset, reason, m.key, m.value)


def attach_rekeyed(app: faust.App, settings: Settings, name: str, source: faust.TopicT,
                   target: faust.TopicT, forward: Forward,
                   processor: RekeyedProcessor[Any], services: WorkerServices,
                   started: Callable[[], None]) -> None:
    """The agents of one re-keyed flow: ``forward_<name>`` (source -> target),
    ``track_<name>`` (target -> ``processor``; ``started`` runs once the services are up),
    the quiet partitions' clock and the partition bookkeeping."""
    processor.backlog.highwater = consumer_highwater(app, target.get_topic_name())

    async def forward_source(stream: StreamT[bytes]) -> None:
        await services.start()  # dead letters go to ClickHouse too
        try:
            async for events in cast_stream(stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                letters, sent = [], []
                for event in events:
                    value = event.message.value
                    try:
                        if value is not None and len(value) > settings.max_message_bytes:
                            raise BadMessage(f"message is {len(value)} bytes, over the "
                                             f"{settings.max_message_bytes}-byte limit")
                        messages = forward(event)
                    except BadMessage as exc:
                        letters.append(dead_letter(event, str(exc)))
                        continue
                    sent += [await target.send(key=key, value=out) for key, out in messages]
                for future in sent:  # in Kafka before the source offsets are acked
                    await future
                if letters:
                    await processor.checkpointer.publish(SinkBatch(revision=0, partition=0,
                                                                   dead_letters=letters))
                processor.forwarded += len(sent)
                processor.dead_lettered += len(letters)
        finally:
            await services.stop()

    async def track(stream: StreamT[bytes]) -> None:
        await services.start()
        started()
        try:
            async for events in cast_stream(stream).take_events(
                    settings.batch_max_messages, within=settings.checkpoint_seconds):
                await processor.process(events)
        finally:
            await services.stop()

    async def clock() -> None:
        # The wall clock goes through the topic: what never came is noticed when the
        # partition is quiet, and a replay reads the same watermark.
        now_ms = time.time_ns() // 1_000_000
        for partition in processor.quiet():
            await target.send(key=b"", partition=partition, value=orjson.dumps(
                {"type": "watermark", "event_time": now_ms}))

    async def watch_assigned(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
        processor.assigned({tp.partition for tp in assigned if tp.topic == processor.topic})

    async def forget_revoked(sender: Any, /, *args: Any, signal: BaseSignalT[Any],
                             **kwargs: Any) -> None:
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        processor.forget({tp.partition for tp in revoked if tp.topic == processor.topic})

    app.agent(source, name=f"forward_{name}")(forward_source)
    app.agent(target, name=f"track_{name}")(track)
    app.timer(interval=max(1.0, settings.idle_close_seconds / 4), name=f"{name}_clock")(clock)
    app.on_partitions_assigned.connect(watch_assigned)
    app.on_partitions_revoked.connect(forget_revoked)


def cast_stream(stream: StreamT[bytes]) -> Stream[bytes]:
    return cast(Stream[bytes], stream)
