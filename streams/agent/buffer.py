"""Encoded telemetry samples waiting for Kafka, in a bounded buffer that drops the OLDEST.

Why the oldest: while Kafka is away the buffer holds the most recent ``capacity`` samples,
so when it comes back consumers get the latest stretch of the host's history, ending at
"now", rather than a stale stretch from the start of the outage and then a gap up to now.
Every drop is counted; the agent writes the count into each sample (``dropped``).

>>> buffer = SampleBuffer(capacity=2)
>>> for i in range(3):
...     buffer.push(Message(b"gpu-07", b"sample %d" % i))
>>> buffer.dropped, [m.value for m in buffer]
(1, [b'sample 1', b'sample 2'])
>>> message = buffer.pop_oldest()
>>> buffer.push(Message(b"gpu-07", b"sample 3"))
>>> buffer.requeue(message)   # its send failed, but newer samples filled the room meanwhile
>>> buffer.dropped, [m.value for m in buffer]
(2, [b'sample 2', b'sample 3'])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["Message", "SampleBuffer"]


class Message(NamedTuple):
    """One Kafka message: the host name as key, the sample's JSON as value."""

    key: bytes
    value: bytes


class SampleBuffer:
    """At most ``capacity`` messages, oldest first; full, a new one pushes the oldest out."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a sample buffer holds at least 1 sample, not {capacity}")
        self.capacity = capacity
        #: Messages dropped since the buffer was made.
        self.dropped = 0
        self._messages: deque[Message] = deque()

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages)

    @property
    def full(self) -> bool:
        return len(self._messages) >= self.capacity

    def make_room(self) -> None:
        """Drop the oldest message if the buffer is full, so the next push drops nothing."""
        if self.full:
            self._messages.popleft()
            self.dropped += 1

    def push(self, message: Message) -> None:
        self.make_room()
        self._messages.append(message)

    def pop_oldest(self) -> Message | None:
        return self._messages.popleft() if self._messages else None

    def requeue(self, message: Message) -> None:
        """Put back a message whose send failed, as the oldest; if newer ones took its
        room meanwhile, it is the one dropped."""
        if self.full:
            self.dropped += 1
        else:
            self._messages.appendleft(message)

    def discard(self) -> int:
        """Drop everything (counted); returns how many."""
        count = len(self._messages)
        self._messages.clear()
        self.dropped += count
        return count
