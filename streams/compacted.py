"""Follow a compacted topic from its beginning, every partition, in every process.

References and the model registry are small, keyed and compacted: each worker reads the
whole topic with a consumer that has no group (so every worker sees every record), keeps
the last record per key as compaction would, and follows the topic for as long as it runs.
:attr:`CompactedReader.ready` turns true once the read has reached the end offsets taken at
start, so a process can wait briefly for what exists (:meth:`CompactedReader.wait_ready`).
Needs only aiokafka: publishing and following work from the base install.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

__all__ = ["CompactedReader", "ensure_compacted_topic"]

log = logging.getLogger(__name__)

_TOPIC_WAIT_POLLS = 100


async def ensure_compacted_topic(settings: Settings, topic: str) -> list[int]:
    """Create ``topic`` compacted, with one partition, if missing; return its partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **kafka_client_options(settings))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            new = NewTopic(topic, 1, settings.replication_factor,
                           topic_configs={"cleanup.policy": "compact"})
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics([new])
        for _ in range(_TOPIC_WAIT_POLLS):  # just created: its metadata may lag a little
            partitions = await _partitions(admin, topic)
            if partitions:
                return partitions
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {topic!r} has no partitions after {_TOPIC_WAIT_POLLS / 10} s")
    finally:
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    for described in await admin.describe_topics([topic]):
        if described["topic"] == topic and described["error_code"] == 0:
            return sorted(p["partition"] for p in described["partitions"])
    return []


class CompactedReader:
    """Reads a compacted topic into memory and follows it; subclasses keep the records
    (:meth:`_apply`). Malformed messages are for :meth:`_apply` to log and skip.

    On a tansu broker, install :mod:`driftline.streams.embedded.tansu_compat` first, or the
    end offsets may be short.
    """

    def __init__(self, settings: Settings, topic: str, client_id: str,
                 poll_timeout_ms: int = 500) -> None:
        self.settings = settings
        self.topic = topic
        self.client_id = client_id
        self.poll_timeout_ms = poll_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ends: dict[TopicPartition, int] = {}
        self._ready = asyncio.Event()
        self._updates = 0

    @property
    def ready(self) -> bool:
        """Whether every record on the topic at start-up has been read."""
        return self._ready.is_set()

    @property
    def updates(self) -> int:
        """Records applied so far (tombstones included): a cheap change counter."""
        return self._updates

    async def wait_ready(self) -> None:
        """Wait until :attr:`ready`; bound it with ``asyncio.timeout`` to wait briefly."""
        await self._ready.wait()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        partitions = [TopicPartition(self.topic, p)
                      for p in await ensure_compacted_topic(self.settings, self.topic)]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.settings.max_message_bytes,
            fetch_max_bytes=self.settings.max_message_bytes,
            client_id=self.client_id, **kafka_client_options(self.settings))
        await consumer.start()
        try:
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._ends = await consumer.end_offsets(partitions)
            await self._check_ready(consumer)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name=self.client_id)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=self.poll_timeout_ms)
            except KafkaError as exc:  # the client reconnects by itself; keep polling
                log.warning("reading %s failed (%r); retrying", self.topic, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    if self._apply(record.key, record.value, record.offset):
                        self._updates += 1
            if not self.ready:
                await self._check_ready(consumer)

    async def _check_ready(self, consumer: AIOKafkaConsumer) -> None:
        positions = [await consumer.position(tp) for tp in self._ends]
        if all(pos >= end for pos, end in zip(positions, self._ends.values(), strict=True)):
            self._ready.set()

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> bool:
        """Keep one record (a tombstone when ``value`` is None); whether it changed anything."""
        raise NotImplementedError
