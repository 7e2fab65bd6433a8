"""Split what Faust buffered into per-partition runs that hold each offset once.

After a restart the consumer can hand over the same offsets twice in one buffer (seen
here: 85 events of one partition covering offsets 64..106, 42 of them repeated). The
checkpoint's applied offset only catches repeats of earlier batches, so every processor
splits its batch here first: whatever Faust or the broker delivers, an offset is applied
at most once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

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


def applied_through(applied_offset: int) -> str:
    """A checkpoint's applied offset, for a log line."""
    if applied_offset < 0:
        return "no offset applied yet"
    return f"offsets up to {applied_offset} applied"
