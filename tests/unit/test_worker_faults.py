"""What a worker does when its input repeats itself or its sink fails: each offset applied
once, a failed write retried from the checkpoint (never half-applied), idleness judged
only when the worker keeps up, dead letters forwarded whatever their size."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from hypothesis import given
from hypothesis import strategies as st
from test_telemetry_windows import HOST, T0, W, gpu, sample
from worker_fakes import FakeEvent, FakeMessage, FakeTable, FakeTopic

from driftline.models.alerting.rules import RulesConfig
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.checkpoint import TRUNCATED_BYTES, Checkpointer
from driftline.streams.worker.idle import Backlog, IdleWatch, consumer_highwater
from driftline.streams.worker.retry import Patience, Revoked
from driftline.streams.worker.telemetry_windows import TelemetryWindowProcessor


def events_at(offsets: Sequence[tuple[int, int]]) -> list[Any]:
    return [FakeEvent(FakeMessage(p, o, b"k", b"v")) for p, o in offsets]


# --- each offset once -----------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=1, max_size=200))
def test_a_batch_holds_each_offset_once_in_order(offsets: list[tuple[int, int]]) -> None:
    runs, repeats = batches.by_partition(events_at(offsets))
    assert repeats == len(offsets) - len(set(offsets))
    for partition, run in runs.items():
        got = [e.message.offset for e in run]
        assert got == sorted({o for p, o in offsets if p == partition})


def test_the_restart_trace_from_the_field_applies_42_repeats_once() -> None:
    # 85 events of partition 0 covering offsets 64..106, 42 of them twice.
    offsets = [(0, o) for o in range(64, 107)] + [(0, o) for o in range(64, 106)]
    runs, repeats = batches.by_partition(events_at(offsets))
    assert repeats == 42 and [e.message.offset for e in runs[0]] == list(range(64, 107))
    assert [e.message.offset for e in batches.after(runs[0], 100)] == list(range(101, 107))


# --- waiting out an outage -----------------------------------------------------------------

async def test_a_failing_step_is_rolled_back_and_retried_until_it_goes_through(
        caplog: pytest.LogCaptureFixture) -> None:
    failures = [OperationalError("Connection refused: http://default:s3cret@ch:8123"),
                ConnectionRefusedError("ClickHouse down"), TimeoutError()]
    rollbacks: list[int] = []

    async def step() -> str:
        if failures:
            raise failures.pop(0)
        return "written"

    patience = Patience(first_delay=0.001, max_delay=0.002, secrets=["s3cret"])
    with caplog.at_level(logging.WARNING):
        assert await patience.run("partition 3", step, rollback=lambda: rollbacks.append(1)) \
            == "written"
    assert len(rollbacks) == 3 and patience.retries == 3 and patience.waiting_since is None
    lines = [r.getMessage() for r in caplog.records]
    assert sum("retrying" in line for line in lines) == 3 and "went through" in lines[-1]
    assert not any("s3cret" in line for line in lines)
    assert all("\n" not in line for line in lines)


async def test_a_bug_is_not_waited_out() -> None:
    async def step() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await Patience(first_delay=0.001).run("partition 0", step)


async def test_a_partition_revoked_while_waiting_is_given_up() -> None:
    async def step() -> None:
        raise ConnectionResetError()

    with pytest.raises(Revoked):
        await Patience(first_delay=0.001).run("partition 0", step, still_ours=lambda: False)


async def test_a_step_that_hangs_is_reported_while_it_waits(
        caplog: pytest.LogCaptureFixture) -> None:
    async def step() -> int:
        await asyncio.sleep(0.05)
        return 1

    with caplog.at_level(logging.WARNING):
        assert await Patience(report_every=0.01).run("partition 1", step) == 1
    assert any("has been waiting" in r.getMessage() for r in caplog.records)


# --- a telemetry processor whose sink fails ------------------------------------------------

class FlakyStore:
    """Writes rows, but the writes listed in ``fail_on`` (1-based) raise first."""

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.rows: dict[tuple[str, int], int] = {}  # (host, window) -> samples, by key

    async def write(self, gpus: Sequence[Any], hosts: Sequence[Any], revision: int) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise OperationalError("HTTPConnectionPool: Connection refused")
        for row in hosts:
            self.rows[(row.host, row.window_start)] = row.samples


def telemetry_events(n: int) -> list[Any]:
    return [FakeEvent(FakeMessage(0, i, HOST.encode(), sample(T0 + i * 5_000, [gpu(0)]).to_json()))
            for i in range(n)]


async def run_telemetry(store: FlakyStore, chunks: list[list[Any]]) -> FakeTable:
    table = FakeTable()
    processor = TelemetryWindowProcessor(Settings(), table, FakeTopic(), FakeTopic(),
                                         _no_rows, RulesConfig.default())
    processor.steps.patience.first_delay = 0.001
    processor.store = store  # type: ignore[assignment]
    for chunk in chunks:
        await processor.process(chunk)
    return table


async def _no_rows(batch: SinkBatch) -> None:
    return None


async def test_failed_writes_and_repeated_offsets_leave_exact_windows() -> None:
    events = telemetry_events(60)  # 12 samples a minute: windows T0..T0+4W
    clean = FlakyStore(set())
    await run_telemetry(clean, [events[:25], events[25:]])
    flaky = FlakyStore({1, 2, 4})
    # The field's restart trace: a batch that holds part of itself twice.
    await run_telemetry(flaky, [events[:25], events[10:40] + events[20:40], events[40:]])
    assert flaky.rows == clean.rows and set(clean.rows.values()) == {12}
    assert flaky.calls > clean.calls


# --- idleness needs a worker that keeps up -------------------------------------------------

def test_no_source_is_idle_while_its_partition_is_behind() -> None:
    highwater = {0: 100}
    applied = {0: 40}
    backlog = Backlog(lambda p: highwater[p])
    watch = IdleWatch(30.0, "partition-")
    watch.seen(0, "fraud", 0.0)

    def due(now: float) -> list[Any]:
        return watch.due(now, lambda p, s: T0 + W,
                         lambda ps: backlog.caught_up(ps, lambda p: applied[p]))

    assert due(10.0) == []  # first check: only marks the high watermark
    assert due(40.0) == []  # quiet for 40 s, but 59 messages wait unprocessed
    applied[0] = 99  # the stall is over and the backlog applied
    assert due(50.0) == []  # silence counts again from the last check that was behind
    assert due(71.0) == [(0, "fraud", T0 + W)]


def test_no_source_is_idle_while_the_broker_does_not_answer() -> None:
    # A paused broker: the last high watermark was reached, but it is stale, and the
    # producers' messages wait in their buffers.
    highwater: dict[int, int | None] = {0: 100}
    backlog = Backlog(lambda p: highwater[p])
    watch = IdleWatch(30.0, "partition-")
    watch.seen(0, "fraud", 0.0)

    def due(now: float) -> list[Any]:
        return watch.due(now, lambda p, s: T0 + W,
                         lambda ps: backlog.caught_up(ps, lambda p: 99))

    assert due(10.0) == []
    highwater[0] = None  # polled too long ago
    assert due(31.0) == []
    highwater[0] = 100  # answering again: one check to mark, one to see it reached
    assert due(40.0) == []
    assert due(50.0) == []  # caught up, but quiet only since 40
    assert due(71.0) == [(0, "fraud", T0 + W)]


class _PolledConsumer:
    def __init__(self, highwater: int | None, polled_ms: int | None) -> None:
        self._highwater, self._polled_ms = highwater, polled_ms

    def highwater(self, tp: Any) -> int | None:
        return self._highwater

    def last_poll_timestamp(self, tp: Any) -> int | None:
        if tp.partition != 0:
            raise AssertionError("Partition is not assigned")
        return self._polled_ms


def _app_with(consumer: _PolledConsumer) -> Any:
    thread = SimpleNamespace(_ensure_consumer=lambda: consumer)
    return SimpleNamespace(consumer=SimpleNamespace(_thread=thread))


def test_a_high_watermark_counts_only_while_the_consumer_polls() -> None:
    now = 1_000.0
    fresh = consumer_highwater(_app_with(_PolledConsumer(7, 999_000)), "p", 4.0, lambda: now)
    stale = consumer_highwater(_app_with(_PolledConsumer(7, 995_000)), "p", 4.0, lambda: now)
    never = consumer_highwater(_app_with(_PolledConsumer(None, None)), "p", 4.0, lambda: now)
    assert fresh(0) == 7
    assert fresh(1) is None  # not ours
    assert stale(0) is None and never(0) is None
    assert consumer_highwater(SimpleNamespace(), "p")(0) is None  # no consumer yet


def test_without_a_consumer_every_partition_counts_as_caught_up() -> None:
    assert Backlog().caught_up({0, 1}, lambda p: -1) == {0, 1}


# --- dead letters of any size --------------------------------------------------------------

async def test_a_dead_letter_too_large_to_forward_goes_truncated_with_its_size_and_hash() -> None:
    topic = FakeTopic(max_bytes=200_000)  # the broker's limit, below the worker's
    checkpointer = Checkpointer(FakeTable(), topic, FakeTopic(), _no_rows,  # type: ignore[arg-type]
                                max_message_bytes=1_000_000)
    huge, big, small = b"x" * 9_000_000, b"y" * 500_000, b"{not json"
    batch = SinkBatch(revision=1, partition=0, dead_letters=[
        DeadLetter("predictions", 0, i, "bad", b"m", value)
        for i, value in enumerate([huge, big, small])])
    await checkpointer.publish(batch)
    assert [len(v or b"") for _, v in topic.sent] == [TRUNCATED_BYTES, TRUNCATED_BYTES,
                                                      len(small)]
    first = topic.headers[0]
    assert first["driftline.truncated"] == b"true"
    assert first["driftline.original_bytes"] == b"9000000"
    assert first["driftline.sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert orjson.loads(first["driftline.source"]) == ["predictions", 0, 0]
    assert "driftline.truncated" not in topic.headers[2]


# --- records the consumer skipped are read again ---------------------------------------------

class _SeekingConsumer:
    """Hands the processor what it is given; records where it is sought back to."""

    def __init__(self) -> None:
        self.sought: list[int] = []

    def _new_offset(self, tp: Any) -> None:
        return None

    async def seek(self, tp: Any, offset: int) -> None:
        self.sought.append(offset)

    async def seek_to_committed(self) -> dict[Any, int]:
        return {}


async def test_records_the_consumer_skipped_are_read_again_not_lost() -> None:
    events = telemetry_events(60)
    clean = FlakyStore(set())
    await run_telemetry(clean, [events[:25], events[25:]])

    store, table = FlakyStore(set()), FakeTable()
    processor = TelemetryWindowProcessor(Settings(), table, FakeTopic(), FakeTopic(),
                                         _no_rows, RulesConfig.default())
    processor.store = store  # type: ignore[assignment]
    consumer = _SeekingConsumer()
    processor.offsets.install(consumer, [Settings().telemetry_topic])
    await processor.process(events[:9])
    # Offsets 9..14 dropped by the consumer: the run from 15 waits, the consumer goes back.
    await processor.process(events[15:30])
    assert consumer.sought == [9] and processor.stats.rereads == 1
    assert processor._state(0).windows.applied_offset == 8
    await processor.process(events[9:])  # what the seek brings
    assert store.rows == clean.rows
    assert processor.stats.skipped_offsets == 0
