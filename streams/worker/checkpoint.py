"""The last step of every processor's batch: write its rows, send its dead letters and
alerts, checkpoint the state it changed to the changelog, and wait for all of it, so that
the offsets committed afterwards always lie inside a durable checkpoint."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
import orjson
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import TableT

from driftline.models.alerting.alerts import Alert
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.streams.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

WriteRows = Callable[[SinkBatch], Awaitable[None]]

#: What is kept of a dead letter too large to forward whole: enough to see what it was.
TRUNCATED_BYTES = 64 * 1024

#: The largest checkpoint record written (a Kafka broker's default message limit is 1 MiB;
#: the changelog topics are created to take this plus headroom). One model's record is
#: tens of kB for 25 features.
RECORD_LIMIT = 1_000_000


class CheckpointTooLarge(RuntimeError):
    """One state record is over :data:`RECORD_LIMIT`."""


def check_size(key: bytes, value: bytes) -> None:
    if len(value) > RECORD_LIMIT:
        raise CheckpointTooLarge(
            f"the checkpoint of {key.decode(errors='replace')} is {len(value):,} bytes, over "
            f"the {RECORD_LIMIT:,}-byte record limit: give this model fewer features (or "
            "fewer categories, DRIFTLINE_MAX_TRACKED_CATEGORIES), or split it into models")


class Checkpointer:
    """Writes what a batch produced, then the partition's checkpoint."""

    def __init__(self, table: TableT[bytes, bytes], dead_letter_topic: faust.TopicT,
                 alerts_topic: faust.TopicT, write_rows: WriteRows,
                 max_message_bytes: int) -> None:
        self.table = table
        self.dead_letter_topic = dead_letter_topic
        self.alerts_topic = alerts_topic
        self.write_rows = write_rows
        self.max_message_bytes = max_message_bytes
        #: (model, version) -> what the registry says of it (when deployed, what it was
        #: trained on), added to each alert's summary; set once the registry is read.
        self.describe: Callable[[str, str], str] | None = None
        #: An alert -> what explains it (the slow hop downstream of a slow service).
        self.explain: Callable[[Alert], Awaitable[str]] | None = None
        #: Where the checkpoint and write latencies and the dead letters are counted, and
        #: under which processor's name.
        self.metrics: WorkerMetrics | None = None
        self.name = "worker"

    async def publish(self, batch: SinkBatch) -> None:
        """Write the batch's rows, send its dead letters and alerts, and wait for them."""
        for future in await self._send(batch):
            await future

    async def commit(self, partition: int, records: Sequence[tuple[bytes, bytes]],
                     batch: SinkBatch) -> None:
        """:meth:`publish`, and checkpoint ``records`` (key, value); wait for all of it.

        The last record goes out once the others are in the changelog: it is the one
        that says how far the partition got (a crash before it replays what the others
        hold, and each of them skips what it already has)."""
        for key, value in records:
            check_size(key, value)
        began = time.perf_counter()
        sent = await self._send(batch)
        # Write the changelog for this partition explicitly: inside take_events Faust's
        # "current event" may belong to another partition, and table[key] = ... would use it.
        sent += [self.table.send_changelog(partition, key, value) for key, value in records[:-1]]
        for future in sent:
            await future
        if records:
            await self.table.send_changelog(partition, *records[-1])
        # Only once the changelog holds them: after a failed send the last checkpoint stays
        # in place, and the retried batch starts again from there.
        for key, value in records:
            self.table.data[key] = value
        if self.metrics is not None:
            self.metrics.checkpoint_seconds.labels(processor=self.name).observe(
                time.perf_counter() - began)

    async def _send(self, batch: SinkBatch) -> list[Awaitable[Any]]:
        if self.explain is not None and batch.alerts:
            explain = self.explain
            batch.alerts = [annotated(alert, f" — {text}" if (text := await explain(alert))
                                      else "") for alert in batch.alerts]
        if self.describe is not None and batch.alerts:
            describe = self.describe
            batch.alerts = [annotated(alert, f" [{alert.version}: {text}]"
                                      if (text := describe(alert.model, alert.version)) else "")
                            for alert in batch.alerts]
        if batch:
            began = time.perf_counter()
            await self.write_rows(batch)
            if self.metrics is not None:
                self.metrics.clickhouse_write_seconds.observe(time.perf_counter() - began)
        for letter in batch.dead_letters:
            await self._send_dead_letter(letter)
        sent = [await self.alerts_topic.send(key=a.key, value=a.to_json())
                for a in batch.alerts]
        for alert in batch.alerts:
            log.warning("alert %s %s: %s", alert.state, alert.severity, alert.summary)
        return sent

    async def _send_dead_letter(self, letter: DeadLetter) -> None:
        if self.metrics is not None:
            self.metrics.dead_letter(letter.topic, letter.reason)
        headers = {"driftline.reason": letter.reason.encode(),
                   "driftline.source": orjson.dumps([letter.topic, letter.partition,
                                                     letter.offset])}
        value = letter.value or b""
        if len(value) + len(letter.key or b"") <= self.max_message_bytes:
            try:
                await (await self.dead_letter_topic.send(key=letter.key, value=letter.value,
                                                         headers=headers))
                return
            except MessageSizeTooLargeError:
                pass  # the broker's limit is below ours: forward it truncated like a larger one
        await (await self.dead_letter_topic.send(
            key=(letter.key or b"")[:TRUNCATED_BYTES], value=value[:TRUNCATED_BYTES],
            headers={**headers, **truncation_headers(value)}))


def annotated(alert: Alert, suffix: str) -> Alert:
    """``alert`` with ``suffix`` after its summary (once: a retried batch is annotated
    again)."""
    if not suffix or suffix in alert.summary:
        return alert
    return dataclasses.replace(alert, summary=alert.summary + suffix)


def truncation_headers(value: bytes) -> dict[str, Any]:
    """Headers of a dead letter forwarded cut short: its whole size and SHA-256."""
    return {"driftline.truncated": b"true",
            "driftline.original_bytes": str(len(value)).encode(),
            "driftline.sha256": hashlib.sha256(value).hexdigest().encode()}
