"""The write clock that versions every ClickHouse row: strictly increasing, never behind the
wall clock, and above every revision older code derived from Kafka offsets."""

from __future__ import annotations

import itertools
import threading
import time

from driftline.models.quality.label_join import Label, Prediction, join
from driftline.sinks.write_version import WriteClock, write_versions

#: The largest revisions older code wrote: raw offsets (feature, score, service and
#: telemetry rows) and offset x 1e6 + position (labels), for a partition of 1e11 messages.
OFFSET_REVISION = 10**11
LABEL_REVISION = 10**11 * 1_000_000 + 999_999


def test_versions_strictly_increase_across_calls_and_within_one() -> None:
    taken = [v for n in (1, 3, 1, 1000, 2) for v in write_versions(n)]
    assert len(taken) == 1007
    assert all(a < b for a, b in itertools.pairwise(taken))
    later = write_versions(1)[0]
    assert later > taken[-1]


def test_versions_are_above_every_offset_based_revision() -> None:
    (version,) = write_versions(1)
    assert version > max(OFFSET_REVISION, LABEL_REVISION)
    assert version < 2**64  # fits the UInt64 revision column
    assert abs(version - time.time_ns()) < 60 * 10**9  # it is the time of the write


def test_the_clock_never_goes_back_when_the_wall_clock_does() -> None:
    ticks = iter([5_000, 4_000, 4_000, 6_000])
    clock = WriteClock(now=lambda: next(ticks))
    assert [list(clock.take(n)) for n in (2, 1, 1, 1)] == [[5000, 5001], [5002], [5003],
                                                           [6000]]


def test_versions_are_unique_across_threads() -> None:
    clock = WriteClock(now=lambda: 0)
    taken: list[int] = []

    def take() -> None:
        for _ in range(500):
            taken.extend(clock.take(2))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == list(range(1, 4001))


def test_a_label_at_the_revision_of_the_stored_one_saying_something_else_corrects_it() -> None:
    # The labels topic restarted: a new label landed where the stored one had been.
    ttl = 86_400_000
    prediction = Prediction("m", "v1", "r", 30_000, "fraud")
    first = join([prediction], [Label("m", "r", 90_000, "fraud", revision=7)],
                 window_ms=60_000, ttl_ms=lambda model: ttl)
    # Read back from storage, the label is text; a true replay stays a replay.
    stored = {("m", "r"): first.labeled[0]}
    again = join([], [Label("m", "r", 90_000, "fraud", revision=7)], window_ms=60_000,
                 ttl_ms=lambda model: ttl, stored_predictions={("m", "r"): prediction},
                 stored_pairs=stored)
    assert (again.labeled, len(again.replayed)) == ([], 1)
    new = join([], [Label("m", "r", 95_000, "ok", revision=7)], window_ms=60_000,
               ttl_ms=lambda model: ttl, stored_predictions={("m", "r"): prediction},
               stored_pairs=stored)
    assert [p.label.label for p in new.labeled] == ["ok"]
    assert [p.label.label for p in new.retracted] == ["fraud"]
    waiting = join([], [Label("m", "w", 95_000, "ok", revision=7)], window_ms=60_000,
                   ttl_ms=lambda model: ttl,
                   stored_labels={("m", "w"): Label("m", "w", 90_000, "fraud", revision=7)})
    assert [w.label for w in waiting.waiting] == ["ok"]


def test_a_numeric_label_read_back_as_text_is_still_a_replay() -> None:
    prediction = Prediction("m", "v1", "r", 30_000, 1)
    stored = join([prediction], [Label("m", "r", 90_000, "1", revision=3)], window_ms=60_000,
                  ttl_ms=lambda model: 86_400_000).labeled[0]
    again = join([], [Label("m", "r", 90_000, 1, revision=3)], window_ms=60_000,
                 ttl_ms=lambda model: 86_400_000,
                 stored_predictions={("m", "r"): prediction}, stored_pairs={("m", "r"): stored})
    assert (again.labeled, again.retracted, len(again.replayed)) == ([], [], 1)
