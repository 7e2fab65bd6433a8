"""When a re-keyed flow's quiet partitions get the worker's wall clock as a watermark."""

from __future__ import annotations

from typing import Any

from driftline.streams.settings import Settings
from driftline.streams.worker.rekeyed import RekeyedProcessor


def processor(**overrides: Any) -> RekeyedProcessor[Any]:
    settings = Settings().replace(idle_close_seconds=30.0, window_seconds=60, **overrides)
    return RekeyedProcessor(settings, "pipelines", table=None, checkpointer=None)  # type: ignore[arg-type]


def test_a_quiet_partition_gets_its_first_watermark_after_the_idle_close() -> None:
    p = processor()
    p.assigned({0, 1}, now=0.0)
    assert p.quiet(now=29.0) == []
    assert p.quiet(now=30.0) == [0, 1]  # a job that stopped is noticed this soon
    p._seen[0] = 30.5  # its watermark read back
    assert p.quiet(now=61.0) == []  # both quiet, but stamped less than a window ago
    assert p.quiet(now=90.0) == [0, 1]


def test_a_partition_that_reads_gets_no_watermark() -> None:
    p = processor()
    p.assigned({0}, now=0.0)
    for t in range(0, 200, 10):
        p._seen[0] = float(t)  # a message every 10 s
        assert p.quiet(now=t + 5.0) == []


def test_a_revoked_partition_gets_no_watermark() -> None:
    p = processor()
    p.assigned({0, 1}, now=0.0)
    p.forget({1})
    assert p.quiet(now=100.0) == [0]


class Stuck:
    """A partition's applied offset, and the consumer's high watermark of it."""

    def __init__(self) -> None:
        self.applied = 9
        self.highwater = 10


def test_a_partition_behind_its_log_is_not_quiet() -> None:
    """A step retrying behind a down sink: the forwarder goes on writing, the partition's
    applied offset stays. Its silence is the worker's, not the source's: no watermark, or
    one would land ahead of parts still to come and close their windows early."""
    p = processor()
    log = Stuck()
    p.backlog.highwater = lambda partition: log.highwater
    p._state = lambda partition: type("S", (), {"applied_offset": log.applied})()  # type: ignore[method-assign]
    p.assigned({0}, now=0.0)
    p.quiet(now=1.0)  # the first check only takes the high watermark
    for t in range(2, 100, 8):  # stuck at 9 while parts pile up
        log.highwater += 5
        assert p.quiet(now=float(t)) == []
    log.applied = log.highwater - 1  # caught up: silence counts from here
    assert p.quiet(now=100.0) == []
    assert p.quiet(now=131.0) == [0]
