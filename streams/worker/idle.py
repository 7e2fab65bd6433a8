"""Which sources (a model, a host) of which partition have gone quiet, so the processor can
send them an in-log watermark that closes their open windows.

Shared by the prediction and telemetry processors. Wall-clock silence decides when to
send; the watermark itself goes through the topic, so what it closes is decided in the log
and a replay decides the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: (partition, source, event time that closes its open windows)
Watermark = tuple[int, str, int]


class IdleWatch:
    def __init__(self, idle_seconds: float, checkpoint_prefix: str) -> None:
        self.idle_seconds = idle_seconds
        self.checkpoint_prefix = checkpoint_prefix
        self._last_seen: dict[tuple[int, str], float] = {}  # (partition, source) -> monotonic

    def seen(self, partition: int, source: str, now: float) -> None:
        self._last_seen[(partition, source)] = now

    def forget(self, partitions: set[int]) -> None:
        self._last_seen = {k: v for k, v in self._last_seen.items() if k[0] not in partitions}

    def adopt_restored(self, checkpoints: Mapping[Any, Any], loaded: Iterable[int],
                       sources: Callable[[int], Iterable[str]], now: float) -> None:
        """Watch the sources of checkpoints restored at start-up that no message has touched
        yet: one that went quiet before a restart still gets its windows closed.

        ``sources(partition)`` loads the partition's state and names its sources.
        """
        loaded = set(loaded)
        for key in list(checkpoints):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if not name.startswith(self.checkpoint_prefix):
                continue
            partition = int(name.removeprefix(self.checkpoint_prefix))
            if partition in loaded:
                continue
            for source in sources(partition):
                self._last_seen.setdefault((partition, source), now)

    def due(self, now: float, closing_time: Callable[[int, str], int | None]) -> list[Watermark]:
        """Watermarks for sources quiet for ``idle_seconds``; ``closing_time`` gives the
        event time that closes a source's open windows, None when none is open."""
        due = []
        for (partition, source), seen in list(self._last_seen.items()):
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
