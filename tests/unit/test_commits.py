"""The offsets a worker commits come from its durable checkpoints, whatever Faust's acks
and gap bookkeeping say (a real Faust consumer, not connected to any broker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st
from worker_fakes import FakeEvent, FakeMessage

from driftline.streams.worker import batches
from driftline.streams.worker.commits import DurableOffsets

SOURCE = TP("predictions", 0)
OTHER = TP("something-else", 0)


@pytest.fixture
async def consumer() -> AsyncIterator[Any]:
    app = faust.App("commits-test", broker="kafka://127.0.0.1:1", store="memory://",
                    autodiscover=False, web_enabled=False)
    consumer = app.consumer
    consumer._committed_offset[SOURCE] = 10
    consumer._committed_offset[OTHER] = 10
    yield consumer
    consumer._thread.thread_loop.close()  # made by the consumer thread, never started


async def test_faust_alone_commits_past_a_message_it_has_not_processed(consumer: Any) -> None:
    # The flaw the worker works around: 20 was handed to a stream right after 10, so
    # 11..20 became a "gap"; once 20 and 21 are acked, 11..19 count as acked too.
    await consumer._add_gap(OTHER, 11, 20)
    consumer._acked[OTHER] = [10, 20, 21]
    consumer._acked_index[OTHER] = {10, 20, 21}
    assert consumer._filter_committable_offsets([OTHER]) == {OTHER: 21}  # past 11..19


async def test_the_worker_commits_what_its_checkpoints_hold(consumer: Any) -> None:
    offsets = DurableOffsets()
    offsets.install(consumer, ["predictions"])
    consumer._acked[SOURCE] = [10, 11, 11, 12]  # duplicates: Faust would creep one by one
    consumer._acked_index[SOURCE] = {10, 11, 12}
    await consumer._add_gap(SOURCE, 13, 20)
    assert consumer._filter_committable_offsets([SOURCE]) == {}  # nothing durable yet
    offsets.applied("predictions", 0, 14)
    assert consumer._filter_committable_offsets([SOURCE]) == {SOURCE: 15}
    # Faust's bookkeeping of the partition is emptied on every commit, not grown.
    assert consumer._acked[SOURCE] == [] and not consumer._acked_index[SOURCE]
    assert not consumer._gap[SOURCE]
    # Other topics keep Faust's own rule.
    consumer._acked[OTHER] = [10, 11]
    consumer._acked_index[OTHER] = {10, 11}
    assert consumer._filter_committable_offsets([OTHER]) == {OTHER: 12}


async def test_a_partition_given_away_is_not_committed(consumer: Any) -> None:
    offsets = DurableOffsets()
    offsets.install(consumer, ["predictions"])
    offsets.applied("predictions", 0, 30)
    offsets.forget("predictions", [0])
    consumer._acked[SOURCE] = [10]
    assert consumer._filter_committable_offsets([SOURCE]) == {}


@given(st.lists(st.integers(-1, 1_000), max_size=30))
def test_the_offset_to_commit_never_goes_back(applied: list[int]) -> None:
    offsets = DurableOffsets()
    seen: list[int] = []
    for offset in applied:
        offsets.applied("t", 3, offset)
        now = offsets.next_offset("t", 3)
        if now is not None:
            seen.append(now)
    assert seen == sorted(seen)
    durable = [a for a in applied if a >= 0]
    assert offsets.next_offset("t", 3) == (max(durable) + 1 if durable else None)


async def test_partitions_never_committed_are_read_from_their_beginning() -> None:
    # aiokafka seeks only partitions with a committed offset above 0; the rest would keep
    # a position Faust moved past records no stream saw.
    sought: list[Any] = []

    async def seek_to_committed() -> dict[Any, int | None]:
        return {TP("predictions", 0): None, TP("predictions", 1): 0,
                TP("predictions", 2): 41, TP("something-else", 0): None}

    async def seek_to_beginning(*partitions: Any) -> None:
        sought.extend(partitions)

    consumer = SimpleNamespace(_new_offset=lambda tp: None, seek_to_committed=seek_to_committed,
                               _thread=SimpleNamespace(seek_to_beginning=seek_to_beginning))
    DurableOffsets().install(consumer, ["predictions"])
    committed = await consumer.seek_to_committed()
    assert committed[TP("predictions", 2)] == 41
    assert sought == [TP("predictions", 0), TP("predictions", 1)]


@given(st.integers(-1, 50), st.sets(st.integers(0, 120), min_size=1))
def test_skipped_offsets_are_the_ones_missing_after_the_checkpoint(applied: int,
                                                                   offsets: set[int]) -> None:
    fresh: list[Any] = [FakeEvent(FakeMessage(0, o, b"m", b"{}"))
                        for o in sorted(o for o in offsets if o > applied)]
    expected = len(set(range(applied + 1, fresh[-1].message.offset + 1)) - offsets) if fresh else 0
    assert batches.skipped(fresh, applied) == expected


# --- holes in a run: read again, not passed over -------------------------------------------

def _run(offsets: list[int]) -> list[Any]:
    return [FakeEvent(FakeMessage(0, o, b"m", b"{}")) for o in offsets]


def _offsets(events: list[Any]) -> list[int]:
    return [e.message.offset for e in events]


def test_a_run_that_continues_the_checkpoint_is_applied_whole() -> None:
    gaps = batches.Gaps()
    run = _run([9, 10, 11])
    assert gaps.split("t", 0, run, 8) == (run, None)


def test_a_hole_stops_the_run_and_is_read_again_until_it_fills() -> None:
    now = [0.0]
    gaps = batches.Gaps(patience_s=10.0, reread_every_s=1.0, clock=lambda: now[0])
    # The field's trace: checkpoint at 8, the consumer hands over 15.. (9..14 dropped).
    applied, reread = gaps.split("t", 0, _run([15, 16]), 8)
    assert (_offsets(applied), reread) == ([], 9)
    now[0] = 0.5  # stale records still come: held back, not sought again yet
    assert gaps.split("t", 0, _run([17]), 8) == ([], None)
    now[0] = 1.6
    assert gaps.split("t", 0, _run([18]), 8) == ([], 9)
    # The part before a hole is applied; the re-read then fills it.
    applied, reread = gaps.split("t", 0, _run([9, 10, 12]), 8)
    assert (_offsets(applied), reread) == ([9, 10], 11)
    assert _offsets(gaps.split("t", 0, _run([11, 12, 13]), 10)[0]) == [11, 12, 13]


def test_a_hole_that_stays_is_passed_over_after_the_patience() -> None:
    now = [0.0]
    gaps = batches.Gaps(patience_s=10.0, clock=lambda: now[0])
    assert gaps.split("t", 0, _run([20, 21]), 4) == ([], 5)  # transaction markers, say
    now[0] = 9.9
    assert gaps.split("t", 0, _run([20, 21]), 4)[0] == []
    now[0] = 10.0
    run = _run([20, 21])
    assert gaps.split("t", 0, run, 4) == (run, None)
    assert batches.skipped(run, 4) == 15


def test_without_a_consumer_to_seek_a_run_is_applied_whole() -> None:
    run = _run([15, 16])
    assert batches.Gaps().split("t", 0, run, 8, can_reread=False) == (run, None)


async def test_reread_seeks_the_consumer_back() -> None:
    sought: list[tuple[Any, int]] = []

    async def seek(tp: Any, offset: int) -> None:
        sought.append((tp, offset))

    async def seek_to_committed() -> dict[Any, int | None]:
        return {TP("labels", 0): 86, TP("labels", 1): None, TP("predictions", 0): 40}

    consumer = SimpleNamespace(_new_offset=lambda tp: None, seek=seek,
                               seek_to_committed=seek_to_committed,
                               _thread=SimpleNamespace(seek_to_beginning=_no_seek))
    offsets = DurableOffsets()
    assert not offsets.can_reread
    offsets.install(consumer, ["predictions", "labels"], known_from_commit=["labels"])
    assert offsets.can_reread
    await offsets.reread("predictions", 3, 9)
    assert sought == [(TP("predictions", 3), 9)]
    # Labels keep no offset of their own: the committed one is where they continue.
    await consumer.seek_to_committed()
    assert offsets.next_offset("labels", 0) == 86
    assert offsets.next_offset("labels", 1) is None
    assert offsets.next_offset("predictions", 0) is None  # its checkpoint says


async def _no_seek(*partitions: Any) -> None:
    return None


@given(st.lists(st.integers(0, 50), max_size=40), st.integers(1, 120))
def test_a_run_is_decoded_in_parts_of_bounded_size_in_order(sizes: list[int],
                                                            limit: int) -> None:
    run = [FakeEvent(FakeMessage(0, i, b"m", b"x" * n)) for i, n in enumerate(sizes)]
    parts = list(batches.chunks(run, limit))
    assert [e for part in parts for e in part] == run
    for part in parts:
        assert part and (len(part) == 1 or sum(len(e.message.value) for e in part) <= limit)
