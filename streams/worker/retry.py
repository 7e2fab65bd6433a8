"""Wait out an outage of ClickHouse or Kafka instead of crashing an agent or skipping a batch.

A processor runs each partition's batch as one step: apply to the partition's state, then
write and checkpoint. When a write fails, the step is run again from the partition's last
checkpoint (the processor drops its cached state first), so nothing is half-applied and no
offset is acked or skipped meanwhile. The worker keeps its consumer-group membership (the
consumer's heartbeats run on their own) and says, in the log, what it is waiting for.

Only errors of the outside world are waited out (connections, timeouts, ClickHouse and
Kafka errors); anything else is a bug and propagates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors of the outside world: the step is worth running again.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, ClickHouseError,
                                              KafkaError)


class Revoked(Exception):
    """The partition went to another worker while its batch waited: the new owner replays it."""


class Patience:
    """Runs a step until it succeeds, with exponential backoff and a log line per try.

    ``secrets`` are replaced by ``***`` in every message logged.
    """

    def __init__(self, *, first_delay: float = 1.0, max_delay: float = 30.0,
                 report_every: float = 15.0, secrets: Collection[str] = ()) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.report_every = report_every
        self.secrets = [s for s in secrets if s]
        #: Steps that failed at least once since the worker started.
        self.retries = 0
        #: Monotonic time the current outage began, None when every step is going through.
        self.waiting_since: float | None = None

    async def run(self, what: str, step: Callable[[], Awaitable[T]],
                  rollback: Callable[[], object] = lambda: None,
                  still_ours: Callable[[], bool] = lambda: True) -> T:
        """``step()`` until it succeeds; ``rollback()`` after each failure.

        Raises :class:`Revoked` when ``still_ours()`` turns false between tries.
        """
        delay = self.first_delay
        failed_at: float | None = None
        while True:
            try:
                result = await self._reported(what, step)
            except TRANSIENT as exc:
                rollback()
                self.retries += 1
                if failed_at is None:
                    failed_at = time.monotonic()
                    self.waiting_since = self.waiting_since or failed_at
                log.warning("%s failed (%s); retrying in %.0f s from the last checkpoint, "
                            "offsets are not acked meanwhile", what, self._describe(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                if not still_ours():
                    raise Revoked(what) from exc
                continue
            if failed_at is not None:
                log.warning("%s went through after %.0f s of retries", what,
                            time.monotonic() - failed_at)
                self.waiting_since = None
            return result

    async def _reported(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Await ``step()``, logging every ``report_every`` seconds it has not finished (a
        paused server answers nothing, and a silent wait looks like a hung worker)."""
        task = asyncio.ensure_future(step())
        started = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.report_every)
                if done:
                    return task.result()
                log.warning("%s has been waiting %.0f s for ClickHouse or Kafka to answer",
                            what, time.monotonic() - started)
        finally:
            if not task.done():
                task.cancel()

    def _describe(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or "no detail"
        for secret in self.secrets:
            text = text.replace(secret, "***")
        if len(text) > 300:
            text = text[:300] + "..."
        return f"{type(exc).__name__}: {text}"


class PartitionSteps:
    """Runs a processor's per-partition steps with :class:`Patience`: a failed step drops
    the partition's cached state (``states``), so the next try starts from its checkpoint;
    a partition revoked meanwhile is given up to its new owner."""

    def __init__(self, patience: Patience, states: MutableMapping[int, Any], topic: str) -> None:
        self.patience = patience
        self.states = states
        self.topic = topic
        self._revokes: dict[int, int] = {}

    async def run(self, partition: int, step: Callable[[], Awaitable[None]]) -> None:
        revokes = self._revokes.get(partition, 0)
        try:
            await self.patience.run(
                f"{self.topic} partition {partition}", step,
                rollback=functools.partial(self.states.pop, partition, None),
                still_ours=lambda: self._revokes.get(partition, 0) == revokes)
        except Revoked:
            log.warning("%s partition %d went to another worker while its batch waited; its "
                        "new owner replays the batch", self.topic, partition)

    def revoked(self, partitions: Collection[int]) -> None:
        for partition in partitions:
            self._revokes[partition] = self._revokes.get(partition, 0) + 1
