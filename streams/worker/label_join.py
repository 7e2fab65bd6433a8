"""Join predictions with the labels that arrive later (or earlier), through ClickHouse.

Both source topics are keyed by model and have the same partition count, so Faust gives
partition p of both to one worker; one :class:`asyncio.Lock` per partition, shared by the
predictions agent and the labels agent, makes their batches take turns, so each lookup
sees every write before it. Everything written replaces by key (see
:mod:`driftline.sinks.label_store`), so a replay after a crash changes nothing and needs no
checkpoint of its own: a replayed label meets the pair it already wrote and is a
duplicate.

Predictions are stored column-wise from the envelope, with no per-event objects; only
predictions whose request id has a label waiting (an in-memory set, loaded at start-up)
are joined at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Container, Mapping, Sequence

from faust.types import EventT

from driftline.models.events.wire import BadMessage, EventBlock, decode
from driftline.models.quality.label_join import JoinResult, Key, Label, Prediction, join
from driftline.sinks.clickhouse import DeadLetter
from driftline.sinks.label_store import LabelStore
from driftline.sinks.performance_store import WindowKey
from driftline.streams.settings import Settings

log = logging.getLogger(__name__)
#: Label revisions order labels within a partition: offset, then position in an envelope.
PER_MESSAGE = 1_000_000


class LabelJoinStats:
    def __init__(self) -> None:
        self.labels = 0
        self.paired = 0
        self.waiting = 0
        self.duplicates = 0
        self.corrections = 0
        self.expired = 0
        self.bad_messages = 0

    def count(self, result: JoinResult) -> None:
        """Add what one join wrote (expired pairs are kept, not counted as paired)."""
        counted = sum(not pair.expired for pair in result.labeled)
        self.paired += counted - len(result.retracted)
        self.corrections += len(result.retracted)
        self.waiting += len(result.waiting)
        self.duplicates += result.duplicates
        self.expired += result.expired

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclasses.dataclass
class LabelsRead:
    """What one run of label messages did."""

    #: Windows whose labels changed.
    labelled: set[WindowKey] = dataclasses.field(default_factory=set)
    #: Each model's latest event time on the labels topic (labels and outcomes).
    clock: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Messages that could not be read (for the dead-letter topic and table).
    dead_letters: list[DeadLetter] = dataclasses.field(default_factory=list)
    #: Outcome messages, (offset, block), for the outcome join.
    outcomes: list[tuple[int, EventBlock]] = dataclasses.field(default_factory=list)


class LabelJoiner:
    def __init__(self, settings: Settings, store: LabelStore) -> None:
        self.settings = settings
        self.store = store
        self.stats = LabelJoinStats()
        self.locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._waiting: set[Key] = set()

    async def start(self) -> None:
        """Load the keys of labels still waiting for their prediction."""
        result = await self.store.client.query(
            f"SELECT model, request_id FROM {self.store.database}.waiting_labels FINAL")
        self._waiting = {(m, r) for m, r in result.result_rows}

    def ttl_ms(self, model: str) -> int:
        return int(self.settings.for_model(model, "label_ttl_seconds")) * 1000

    def early_ttl_ms(self, model: str) -> int:
        return int(self.settings.for_model(model, "early_label_ttl_seconds")) * 1000

    async def on_predictions(self, blocks: Sequence[EventBlock],
                             clock: Mapping[str, int] | None = None) -> set[WindowKey]:
        """Store a partition's prediction messages; pair those a label is waiting for.

        ``clock`` is each model's event time after the batch. Call under
        ``locks[partition]``, before the batch's offsets are acknowledged. Returns the
        windows whose labels changed.
        """
        blocks = [b for b in blocks if b.kind == "prediction" and b.request_id]
        if not blocks:
            return set()
        await self.store.put_prediction_blocks(blocks)
        ready = [p for b in blocks for p in awaited(b, self._waiting)] if self._waiting else []
        if not ready:
            return set()
        keys = [p.key for p in ready]
        waiting = await self.store.waiting(keys)
        result = join(ready, [], window_ms=self.settings.window_ms, ttl_ms=self.ttl_ms,
                      stored_labels=waiting,
                      stored_pairs=await self.store.pairs(keys, self.settings.window_ms),
                      early_ttl_ms=self.early_ttl_ms, clock=clock)
        await self._write(result, [waiting[key] for key in result.settled])
        return result.touched

    async def on_labels(self, events: Sequence[EventT[bytes]]) -> LabelsRead:
        """Join a partition's label messages (offset order); call under its lock.

        Outcome messages (the labels topic carries them too) are not joined here: they come
        back in :attr:`LabelsRead.outcomes` for the outcome join.
        """
        labels: list[Label] = []
        read = LabelsRead()
        for event in events:
            message = event.message
            try:
                block = decode(message.key, message.value, self.settings.max_message_bytes)
                if block.kind == "prediction":
                    raise BadMessage("a prediction message on the labels topic")
            except BadMessage as exc:
                read.dead_letters.append(DeadLetter(message.topic, message.partition,
                                                    message.offset, str(exc), message.key,
                                                    message.value))
                continue
            if not block.model:
                continue  # a watermark for every model: labels name their models
            latest = max(block.event_time)
            # A watermark says the model's labels and outcomes are in up to its time.
            read.clock[block.model] = max(read.clock.get(block.model, latest), latest)
            if block.kind == "outcome":
                read.outcomes.append((message.offset, block))
            elif block.kind == "label":
                labels += _labels(block, message.offset)
        self.stats.bad_messages += len(read.dead_letters)
        if not labels:
            return read
        keys = list({label.key for label in labels})
        window_ms = self.settings.window_ms
        result = join([], labels, window_ms=window_ms, ttl_ms=self.ttl_ms,
                      stored_predictions=await self.store.predictions(keys),
                      stored_labels=await self.store.waiting(keys),
                      stored_pairs=await self.store.pairs(keys, window_ms))
        await self._write(result, [])
        self.stats.labels += len(labels)
        read.labelled = result.touched
        return read

    async def _write(self, result: JoinResult, settled: list[Label]) -> None:
        await self.store.put_pairs(result.labeled)
        await self.store.put_waiting(result.waiting, settled)
        self._waiting |= {label.key for label in result.waiting}
        self._waiting -= set(result.settled)
        self._waiting -= {pair.prediction.key for pair in result.labeled}
        self.stats.count(result)


def awaited(block: EventBlock, waiting: Container[Key]) -> list[Prediction]:
    """The block's predictions something is waiting for (objects only for those)."""
    hits = [i for i, rid in enumerate(block.request_id) if (block.model, rid) in waiting]
    predictions = block.prediction or [None] * len(block)
    scores = block.score or [None] * len(block)
    return [Prediction(block.model, block.version, block.request_id[i], block.event_time[i],
                       predictions[i], scores[i]) for i in hits]


def _labels(block: EventBlock, offset: int) -> list[Label]:
    values = block.label or []
    return [Label(block.model, rid, t, value, offset * PER_MESSAGE + i)
            for i, (rid, t, value) in enumerate(zip(block.request_id, block.event_time, values,
                                                    strict=True))]
