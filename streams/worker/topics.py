"""The topics driftline reads and writes, declared on the app and created up front.

Source topics are created explicitly with the configured partition count, because Faust
table changelogs get that count too, and a mismatch between them breaks recovery.
"""

from __future__ import annotations

import contextlib
import dataclasses

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings


@dataclasses.dataclass(frozen=True)
class Topics:
    predictions: faust.TopicT
    labels: faust.TopicT
    dead_letters: faust.TopicT
    alerts: faust.TopicT
    telemetry: faust.TopicT
    retraining: faust.TopicT
    lineage: faust.TopicT
    pipelines: faust.TopicT
    traces: faust.TopicT
    service_chains: faust.TopicT
    service_hops: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    def raw(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw",
                         partitions=settings.partitions)

    return Topics(predictions=raw(settings.predictions_topic),
                  labels=raw(settings.labels_topic),
                  dead_letters=raw(settings.dead_letter_topic),
                  alerts=raw(settings.alerts_topic),
                  telemetry=raw(settings.telemetry_topic),
                  retraining=raw(settings.retraining_topic),
                  lineage=raw(settings.lineage_topic),
                  pipelines=raw(settings.pipelines_topic),
                  traces=raw(settings.traces_topic),
                  service_chains=raw(settings.service_chains_topic),
                  service_hops=app.topic(settings.service_hops_topic, key_serializer="raw",
                                         value_serializer="raw", partitions=1))


async def ensure_topics(settings: Settings) -> None:
    """Create the source (predictions, labels, telemetry, OpenLineage, traces), dead-letter,
    alerts, retraining, pipelines, service-chains and (compacted) references and service-hops
    topics if missing."""
    from driftline.streams.compacted import ensure_compacted_topic
    from driftline.streams.reference.profiles import ensure_references_topic

    names = (settings.predictions_topic, settings.labels_topic, settings.dead_letter_topic,
             settings.alerts_topic, settings.telemetry_topic, settings.retraining_topic,
             settings.lineage_topic, settings.pipelines_topic, settings.traces_topic,
             settings.service_chains_topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, settings.partitions, settings.replication_factor)
                   for name in names if name not in existing]
        # Another worker may create them between our list and our create.
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
    await ensure_references_topic(settings)
    await ensure_compacted_topic(settings, settings.service_hops_topic)
