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
