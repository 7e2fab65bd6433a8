"""Model versions and deployments on the compacted registry topic.

* :func:`publish_model_version` / :func:`publish_deployment` (and ``driftline registry``)
  produce records keyed so compaction keeps the latest of each: a version's metadata once,
  every deployment event of it. Only Kafka is needed, so a training pipeline publishes
  from the base install; a failed publish is simply run again (same key, same record).
* :class:`RegistryStore` follows the whole topic in every worker: which versions are
  registered, when each was deployed, what it was trained on. The worker mirrors what it
  reads into ClickHouse and describes alerts with it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from driftline.models.registry.records import Deployment, ModelVersion, RecordError, decode_record
from driftline.streams.compacted import CompactedReader, ensure_compacted_topic
from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

__all__ = ["RegistryStore", "publish_deployment", "publish_model_version", "publish_records"]

log = logging.getLogger(__name__)

Record = ModelVersion | Deployment


async def publish_records(settings: Settings, records: Sequence[Record]) -> None:
    """Produce ``records`` to ``settings.registry_topic`` (created if missing), acked by
    every replica before this returns."""
    if not records:
        return
    await ensure_compacted_topic(settings, settings.registry_topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                client_id="driftline-registry", **kafka_client_options(settings))
    await producer.start()
    try:
        sent = [await producer.send(settings.registry_topic, r.to_json(), key=r.key)
                for r in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def publish_model_version(settings: Settings, version: ModelVersion) -> None:
    """Register a model version (what it was trained on, with what, how well)."""
    await publish_records(settings, [version])


async def publish_deployment(settings: Settings, deployment: Deployment) -> None:
    """Record that a version went live, was rolled back or retired."""
    await publish_records(settings, [deployment])


class RegistryStore(CompactedReader):
    """Every registered version and deployment, read from the registry topic."""

    def __init__(self, settings: Settings, poll_timeout_ms: int = 500) -> None:
        super().__init__(settings, settings.registry_topic, "driftline-registry",
                         poll_timeout_ms)
        self._records: dict[bytes, Record] = {}
        self._versions: dict[tuple[str, str], ModelVersion] = {}
        #: Models with at least one registered version: their unregistered ones are flagged.
        self._models: dict[str, int] = {}
        self._deployments: dict[tuple[str, str], list[Deployment]] = {}
        #: Records read and not yet taken by :meth:`take_unwritten` (for ClickHouse).
        self._unwritten: list[Record] = []

    def version(self, model: str, version: str) -> ModelVersion | None:
        return self._versions.get((model, version))

    def registered(self, model: str, version: str) -> bool | None:
        """Whether ``version`` is registered; None when ``model`` has no registered
        version (it does not use the registry, so nothing is amiss)."""
        if not self._models.get(model):
            return None
        return (model, version) in self._versions

    def deployments(self, model: str, version: str) -> list[Deployment]:
        """The version's deployment events, oldest first."""
        return list(self._deployments.get((model, version), ()))

    def describe(self, model: str, version: str) -> str:
        """One line for an alert: when the version went live and what it was trained on."""
        parts = []
        live = [d for d in self._deployments.get((model, version), ())
                if d.event == "deployed"]
        if live:
            d = live[-1]
            share = f", {d.traffic_share:.0%} of traffic" if d.traffic_share < 1 else ""
            where = f" to {d.environment}" if d.environment else ""
            parts.append(f"deployed{where} {_utc(d.at_ms)}{share}")
        v = self._versions.get((model, version))
        if v is not None:
            trained = f"trained on {v.training_data}" if v.training_data else "trained"
            run = f" (run {v.training_run_id})" if v.training_run_id else ""
            parts.append(f"{trained}{run} {_utc(v.created_at_ms)}")
        return "; ".join(parts)

    def take_unwritten(self) -> list[Record]:
        taken, self._unwritten = self._unwritten, []
        return taken

    def put_back(self, records: Sequence[Record]) -> None:
        """Records :meth:`take_unwritten` gave that could not be written yet."""
        self._unwritten[:0] = records

    def __len__(self) -> int:
        return len(self._records)

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> bool:
        if key is None:
            log.warning("skipping a registry record without a key at offset %d", offset)
            return False
        if value is None:  # tombstone: the record is withdrawn
            old = self._records.pop(key, None)
            if old is not None:
                self._forget(old)
            return old is not None
        try:
            record = decode_record(value)
        except RecordError as exc:
            log.warning("skipping a registry record at offset %d (key %r): %s", offset, key,
                        exc)
            return False
        if record.key != key:
            log.warning("skipping a registry record at offset %d: key %r is not %r", offset,
                        key, record.key)
            return False
        old = self._records.get(key)
        if old is not None:
            self._forget(old)
        self._records[key] = record
        self._remember(record)
        self._unwritten.append(record)
        return True

    def _remember(self, record: Record) -> None:
        where = (record.model, record.version)
        if isinstance(record, ModelVersion):
            self._versions[where] = record
            self._models[record.model] = self._models.get(record.model, 0) + 1
        else:
            events = self._deployments.setdefault(where, [])
            events.append(record)
            events.sort(key=lambda d: d.at_ms)

    def _forget(self, record: Record) -> None:
        where = (record.model, record.version)
        if isinstance(record, ModelVersion):
            self._versions.pop(where, None)
            self._models[record.model] -= 1
        else:
            self._deployments[where].remove(record)


def _utc(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
