"""Kafka offsets committed from what the checkpoints hold, not from Faust's acks.

Faust 0.15.3 commits, per partition, the end of the first run of consecutive offsets its
streams acked, and counts "gaps" as acked: when the next offset it hands to a stream is
more than one past the last one it read, the offsets in between *and that message itself*
go into the gap. Right after a restart, while the consumer re-seeks to its committed
offsets with records already fetched, such gaps are common (seen here on every restart),
with two effects:

* a commit can pass messages still waiting in an agent's buffer; a worker killed then
  restarts after them, and they are never applied (cells lost);
* offsets land twice in Faust's acked list, and each commit then moves one offset on:
  after a kill storm the committed offset crept forward by one per second, leaving a
  consumer lag of 16,000 that took hours to drain.

So for the source topics, the worker commits what its processors made durable instead:
per partition, the offset after the last one a durable checkpoint (or, for labels, a
completed write) applied. Faust's acks still drive its flow control and the wait for
in-flight messages during a rebalance; only the choice of the offset to commit changes.

A second flaw opens holes where nothing was committed yet. While a new assignment's
tables recover, Faust fetches the source partitions too and throws away what it fetched
for partitions that are paused meanwhile, so the consumer's position moves past records
no stream saw. Recovery ends with a seek to the committed offsets that repairs this, but
aiokafka seeks only partitions whose committed offset is above 0. A worker killed before
its first commit therefore restarted past records it never applied (seen here: offsets
9..11 of a partition skipped, 54 cells short). Partitions without a committed offset are
sought to their beginning (the consumer's ``earliest`` reset) at that point too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterable
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP

log = logging.getLogger(__name__)

_INSTALLED = "_driftline_durable_offsets"


class DurableOffsets:
    """The next offset to read of each source partition, as far as what is durable goes."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._consumer: Any = None

    @property
    def can_reread(self) -> bool:
        """Whether :meth:`reread` can seek: a consumer is installed."""
        return self._consumer is not None

    async def reread(self, topic: str, partition: int, offset: int) -> None:
        """Seek the consumer back so ``offset`` of the partition is read again (see
        :class:`~driftline.streams.worker.batches.Gaps`)."""
        if self._consumer is None:
            return
        log.warning("%s partition %d: the consumer skipped offsets from %d; reading them "
                    "again", topic, partition, offset)
        # Revoked meanwhile: its new owner reads it.
        with contextlib.suppress(IllegalStateError, KeyError, AssertionError):
            await self._consumer.seek(TP(topic, partition), offset)

    def applied(self, topic: str, partition: int, offset: int) -> None:
        """Everything of ``topic`` partition ``partition`` up to ``offset`` is durable."""
        if offset < 0:
            return
        key = (topic, partition)
        self._next[key] = max(self._next.get(key, 0), offset + 1)

    def next_offset(self, topic: str, partition: int) -> int | None:
        return self._next.get((topic, partition))

    def forget(self, topic: str, partitions: Iterable[int]) -> None:
        """Partitions gone to another worker: their new owner commits them."""
        for partition in partitions:
            self._next.pop((topic, partition), None)

    def install(self, consumer: Any, topics: Collection[str],
                known_from_commit: Collection[str] = ()) -> None:
        """Make Faust's ``consumer`` commit these offsets for ``topics``, and seek those of
        its partitions that have no committed offset to their beginning after a rebalance
        (faust-streaming is pinned: this replaces its ``Consumer._new_offset`` and wraps
        ``seek_to_committed``); once per consumer. The committed offsets of
        ``known_from_commit`` (topics whose processors keep no offset of their own) count as
        durable once sought to."""
        if getattr(consumer, _INSTALLED, None) is self:
            return
        faust_new_offset = consumer._new_offset
        topics = frozenset(topics)
        known_from_commit = frozenset(known_from_commit)
        self._consumer = consumer

        def new_offset(tp: TP) -> int | None:
            if tp.topic not in topics:
                offset: int | None = faust_new_offset(tp)
                return offset
            # Faust's own bookkeeping of the partition is not used: keep it from growing.
            consumer._acked[tp].clear()
            consumer._acked_index[tp].clear()
            gaps = consumer._gap.get(tp)
            if gaps:
                gaps.clear()
            return self.next_offset(tp.topic, tp.partition)

        consumer._new_offset = new_offset

        faust_seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed() -> Any:
            committed = await faust_seek_to_committed()
            for tp, offset in committed.items():
                if tp.topic in known_from_commit and offset:
                    self.applied(tp.topic, tp.partition, offset - 1)
            never = [tp for tp, offset in committed.items() if tp.topic in topics and not offset]
            if never:
                # Revoked meanwhile: the new owner starts from the committed offset.
                with contextlib.suppress(IllegalStateError):
                    await consumer._thread.seek_to_beginning(*never)
            return committed

        consumer.seek_to_committed = seek_to_committed
        setattr(consumer, _INSTALLED, self)
