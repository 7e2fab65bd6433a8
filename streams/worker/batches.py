"""Split what Faust buffered into per-partition runs that hold each offset once.

After a restart the consumer can hand over the same offsets twice in one buffer (seen
here: 85 events of one partition covering offsets 64..106, 42 of them repeated). The
checkpoint's applied offset only catches repeats of earlier batches, so every processor
splits its batch here first: whatever Faust or the broker delivers, an offset is applied
at most once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from faust.types import EventT


def by_partition(events: Sequence[EventT[bytes]]) -> tuple[dict[int, list[EventT[bytes]]], int]:
    """Events per partition in offset order, each offset once; and how many repeats were
    dropped."""
    grouped: defaultdict[int, list[EventT[bytes]]] = defaultdict(list)
    for event in events:
        grouped[event.message.partition].append(event)
    repeats = 0
    runs: dict[int, list[EventT[bytes]]] = {}
    for partition, part in grouped.items():
        part.sort(key=lambda e: e.message.offset)
        run = [part[0]]
        for event in part[1:]:
            if event.message.offset == run[-1].message.offset:
                repeats += 1
            else:
                run.append(event)
        runs[partition] = run
    return runs, repeats


def chunks(events: list[EventT[bytes]], max_bytes: int) -> Iterator[list[EventT[bytes]]]:
    """``events`` in order, in consecutive parts of at most ``max_bytes`` of message values
    (a single larger message is a part of its own)."""
    part: list[EventT[bytes]] = []
    size = 0
    for event in events:
        n = len(event.message.value or b"")
        if part and size + n > max_bytes:
            yield part
            part, size = [], 0
        part.append(event)
        size += n
    if part:
        yield part


def after(events: list[EventT[bytes]], applied_offset: int) -> list[EventT[bytes]]:
    """The events of one partition's run (offset order) above the checkpoint's offset."""
    return [e for e in events if e.message.offset > applied_offset]


def skipped(fresh: list[EventT[bytes]], applied_offset: int) -> int:
    """How many offsets between the checkpoint's and the last of ``fresh`` (a run above it,
    offset order) were not delivered: transaction markers and compaction leave such gaps,
    anything else is a consumer fault worth a look."""
    if not fresh:
        return 0
    first = max(applied_offset + 1, 0)
    return fresh[-1].message.offset - first + 1 - len(fresh)


class Gaps:
    """Offsets the consumer skipped before handing a run over, read again before going on.

    Faust reads each partition through one iterator of fetched records; when the consumer
    is sought back (after a rebalance, to the committed offsets) while that iterator still
    holds records from before the seek, it yields them, moves its read offset past the
    records the seek fetches again, and drops those (seen here: a killed worker's
    successor applied offsets 15.. of a partition whose checkpoint held up to 8; 142
    cells short). So a run that does not continue where the checkpoint ends is applied up
    to its first hole only, and the consumer is sought back to the hole. A hole that is
    still there after ``patience_s`` of such re-reads is a real one (transaction markers,
    compaction) and is passed over.
    """

    def __init__(self, patience_s: float = 10.0, reread_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.patience_s = patience_s
        self.reread_every_s = reread_every_s
        self.clock = clock
        self._holes: dict[tuple[str, int], tuple[int, float, float]] = {}

    def split(self, topic: str, partition: int, fresh: list[EventT[bytes]],
              applied_offset: int, can_reread: bool = True
              ) -> tuple[list[EventT[bytes]], int | None]:
        """Of ``fresh`` (a run above ``applied_offset``, offset order), the part to apply
        now; and the offset to seek the consumer back to, None when there is none to (or
        no consumer to seek: ``can_reread`` false, and the whole run is applied)."""
        if not can_reread:
            return fresh, None
        expected, i = applied_offset + 1, 0
        while i < len(fresh) and fresh[i].message.offset == expected:
            expected, i = expected + 1, i + 1
        if i == len(fresh):
            self._holes.pop((topic, partition), None)
            return fresh, None
        key, now = (topic, partition), self.clock()
        hole, since, reread = self._holes.get(key, (-1, now, -1e18))
        if hole != expected:
            since, reread = now, -1e18
        if now - since >= self.patience_s:
            self._holes.pop(key, None)
            return fresh, None  # a real hole: skipped() counts it
        due = now - reread >= self.reread_every_s
        self._holes[key] = (expected, since, now if due else reread)
        return fresh[:i], expected if due else None

    def forget(self, topic: str, partitions: set[int]) -> None:
        for partition in partitions:
            self._holes.pop((topic, partition), None)


def applied_through(applied_offset: int) -> str:
    """A checkpoint's applied offset, for a log line."""
    if applied_offset < 0:
        return "no offset applied yet"
    return f"offsets up to {applied_offset} applied"
