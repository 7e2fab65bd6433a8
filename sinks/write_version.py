"""The version every ClickHouse row is written with: a write clock, not a Kafka offset.

Each table is a ``ReplacingMergeTree`` whose version column (``revision``) decides which
row of a key survives. A source offset cannot be that version: offsets start again at 0
when a topic is recreated, when the embedded broker restarts with empty storage or when
the worker moves to another Kafka cluster, and then rows written earlier, with higher
offsets, would beat every new row of the same key. The time of the write can: the later
write of a key is the later state of it, whatever the offsets did.

* Nanoseconds since the epoch (about 1.8e18 now; UInt64 holds them until the year 2554),
  so every new row beats every row older code wrote with an offset-based revision: raw
  offsets, and label revisions of offset x 1e6 + position, would need a partition of
  1.8e12 messages to reach it. Existing databases need no migration.
* Strictly increasing within the process, ``max(last + 1, now)``, and one value per row
  in insert order: two writes of a key never tie, even in one insert or when the system
  clock steps back.
* A replay after a crash rewrites the same values, so it does not matter that its copy
  wins. Two workers writing one key during a rebalance: the later write wins, as long as
  their hosts' clocks agree to better than the time between the writes (NTP keeps them
  within milliseconds; the rows are seconds apart).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["WriteClock", "write_versions"]


class WriteClock:
    """Strictly increasing integers that follow a wall clock.

    Parameters
    ----------
    now
        The wall clock, in the unit of the versions (nanoseconds since the epoch by default).

    Examples
    --------
    >>> ticks = iter([1_000, 1_000, 900, 5_000])
    >>> clock = WriteClock(now=lambda: next(ticks))
    >>> [list(clock.take(n)) for n in (2, 1, 1, 1)]
    [[1000, 1001], [1002], [1003], [5000]]
    """

    def __init__(self, now: Callable[[], int] = time.time_ns) -> None:
        self.now = now
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> range:
        """``n`` consecutive versions, all above every version taken before."""
        with self._lock:
            first = max(self._last + 1, self.now())
            self._last = first + max(n, 1) - 1
        return range(first, first + n)


_VERSIONS = WriteClock()


def write_versions(n: int) -> range:
    """Versions for the ``n`` rows of one insert, in insert order (nanoseconds)."""
    return _VERSIONS.take(n)
