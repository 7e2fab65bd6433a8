"""Which sources (a model, a host) of which partition have gone quiet, so the processor can
send them an in-log watermark that closes their open windows.

Shared by the prediction and telemetry processors. Wall-clock silence decides when to
send; the watermark itself goes through the topic, so what it closes is decided in the log
and a replay decides the same.

Silence counts only while the processor keeps up with its partition (:class:`Backlog`): a
worker whose sink is down stops reading, and the messages of a busy model wait behind
the stall. Judged quiet then, the model would get a watermark in the log ahead of its own
next events, and on-time events would count as late. The same holds while the broker does
not answer: the consumer's last high watermark then looks caught up, but it is stale, and
producers' messages wait in their buffers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

#: (partition, source, event time that closes its open windows)
Watermark = tuple[int, str, int]


class IdleWatch:
    def __init__(self, idle_seconds: float, checkpoint_prefix: str) -> None:
        self.idle_seconds = idle_seconds
        self.checkpoint_prefix = checkpoint_prefix
        self._last_seen: dict[tuple[int, str], float] = {}  # (partition, source) -> monotonic
        self._loaded: list[tuple[int, str]] = []

    def seen(self, partition: int, source: str, now: float) -> None:
        self._last_seen[(partition, source)] = now

    def loaded(self, partition: int, sources: Iterable[str]) -> None:
        """Watch the sources of a state just loaded from its checkpoint, quiet from the
        next check on unless seen before it. Whatever loads it (a batch of replays only,
        say), a source that went quiet before a restart still gets its windows closed."""
        self._loaded += [(partition, source) for source in sources]

    def forget(self, partitions: set[int]) -> None:
        self._last_seen = {k: v for k, v in self._last_seen.items() if k[0] not in partitions}
        self._loaded = [k for k in self._loaded if k[0] not in partitions]

    def adopt_restored(self, checkpoints: Mapping[Any, Any], in_memory: Iterable[int],
                       load: Callable[[int], object]) -> None:
        """Load the checkpoints restored at start-up that no message has touched yet, so
        that their sources are watched (``load(partition)`` loads a partition's state,
        which reports its sources through :meth:`loaded`): one that went quiet before a
        restart still gets its windows closed."""
        in_memory = set(in_memory)
        for key in list(checkpoints):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if not name.startswith(self.checkpoint_prefix):
                continue
            # "partition-3", or a model's record "partition-3/fraud".
            partition = int(name.removeprefix(self.checkpoint_prefix).split("/", 1)[0])
            if partition not in in_memory:
                load(partition)
                in_memory.add(partition)

    def due(self, now: float, closing_time: Callable[[int, str], int | None],
            caught_up: Callable[[Set[int]], Set[int]] = lambda partitions: partitions,
            ) -> list[Watermark]:
        """Watermarks for sources quiet for ``idle_seconds``; ``closing_time`` gives the
        event time that closes a source's open windows, None when none is open;
        ``caught_up`` the partitions with nothing waiting unprocessed (asked on every call,
        see :class:`Backlog`)."""
        for key in self._loaded:
            self._last_seen.setdefault(key, now)
        self._loaded = []
        ready = caught_up({partition for partition, _ in self._last_seen})
        due = []
        for (partition, source), seen in list(self._last_seen.items()):
            if partition not in ready:
                # Behind: its silence is the worker's, not the source's. Counted afresh
                # from when it has caught up.
                self._last_seen[(partition, source)] = now
                continue
            if now - seen < self.idle_seconds:
                continue
            event_time = closing_time(partition, source)
            if event_time is None:  # nothing open: watched again when it sends
                del self._last_seen[(partition, source)]
                continue
            due.append((partition, source, event_time))
            # Not again until this one (or new data) has been processed.
            self._last_seen[(partition, source)] = now
        return due


class Backlog:
    """Which partitions a processor has caught up with: everything that was in the log at
    the previous check has been applied.

    ``highwater(partition)`` is the consumer's next offset of the partition (None while
    unknown). Checked every timer tick (a quarter of the idle time), so under steady
    traffic a worker that keeps up is caught up at every check, and one stalled behind its
    sink is not until it has worked through what piled up.
    """

    def __init__(self, highwater: Callable[[int], int | None] | None = None) -> None:
        self.highwater = highwater
        self._marks: dict[int, int] = {}

    def caught_up(self, partitions: Set[int], applied: Callable[[int], int]) -> set[int]:
        """Of ``partitions``, those whose ``applied(partition)`` offset reaches the
        previous check's high watermark, and whose high watermark is known now (a
        partition the consumer cannot fetch may hold anything)."""
        if self.highwater is None:
            return set(partitions)
        ready = set()
        for partition in partitions:
            mark = self._marks.pop(partition, None)
            highwater = self.highwater(partition)
            if highwater is None:
                continue  # and the next check has no mark: caught up two checks later
            if mark is not None and applied(partition) >= mark - 1:
                ready.add(partition)
            self._marks[partition] = highwater
        return ready

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self._marks.pop(partition, None)


#: The consumer long-polls the broker for up to 1.5 s (Faust's fetch_max_wait_ms), so a high
#: watermark polled longer ago than this means its fetches have stopped: the broker does
#: not answer, or the partition is paused behind a full buffer.
FRESH_POLL_SECONDS = 4.0


def consumer_highwater(app: Any, topic: str, fresh_within: float = FRESH_POLL_SECONDS,
                       clock: Callable[[], float] = time.time
                       ) -> Callable[[int], int | None]:
    """``highwater(partition)`` of ``topic`` as ``app``'s consumer last fetched it, or None
    when unknown or polled more than ``fresh_within`` seconds ago."""
    def highwater(partition: int) -> int | None:
        tp = TP(topic, partition)
        try:
            # Faust's consumer thread holds the aiokafka consumer (faust-streaming pinned).
            consumer = app.consumer._thread._ensure_consumer()
            value, polled_ms = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
        except (ConsumerNotStarted, AssertionError, AttributeError, KeyError):
            return None  # not started, or the partition is not (or no longer) ours
        if value is None or polled_ms is None:
            return None
        if clock() * 1000.0 - polled_ms > fresh_within * 1000.0:
            return None
        return int(value)

    return highwater
