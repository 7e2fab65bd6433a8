"""The last step of every processor's batch: write its rows, send its dead letters and
alerts, checkpoint its partition state to the changelog, and wait for all of it, so that
the offsets Faust acks afterwards always lie inside a durable checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.types import TableT

from driftline.sinks.clickhouse import DeadLetter, SinkBatch

log = logging.getLogger(__name__)

WriteRows = Callable[[SinkBatch], Awaitable[None]]


class Checkpointer:
    """Writes what a batch produced, then the partition's checkpoint."""

    def __init__(self, table: TableT[bytes, bytes], dead_letter_topic: faust.TopicT,
                 alerts_topic: faust.TopicT, write_rows: WriteRows) -> None:
        self.table = table
        self.dead_letter_topic = dead_letter_topic
        self.alerts_topic = alerts_topic
        self.write_rows = write_rows

    async def commit(self, partition: int, key: bytes, state: bytes, batch: SinkBatch) -> None:
        if batch:
            await self.write_rows(batch)
        sent = [await self._send_dead_letter(d) for d in batch.dead_letters]
        sent += [await self.alerts_topic.send(key=a.key, value=a.to_json())
                 for a in batch.alerts]
        for alert in batch.alerts:
            log.warning("alert %s %s: %s", alert.state, alert.severity, alert.summary)
        # Write the changelog for this partition explicitly: inside take_events Faust's
        # "current event" may belong to another partition, and table[key] = ... would use it.
        sent.append(self.table.send_changelog(partition, key, state))
        self.table.data[key] = state
        for future in sent:
            await future

    async def _send_dead_letter(self, letter: DeadLetter) -> Any:
        headers = {"driftline.reason": letter.reason.encode(),
                   "driftline.source": orjson.dumps([letter.topic, letter.partition,
                                                     letter.offset])}
        return await self.dead_letter_topic.send(key=letter.key, value=letter.value,
                                                 headers=headers)
