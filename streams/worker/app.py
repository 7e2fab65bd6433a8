"""Build the :class:`faust.App` from :class:`~driftline.streams.settings.Settings`; nothing else."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
from aiokafka.helpers import create_ssl_context

from driftline.streams.kafka_options import keep_out_of_logs
from driftline.streams.settings import Settings


def build_app(settings: Settings) -> faust.App:
    """A Faust app configured for at-least-once processing with idempotent state and sinks.

    ``exactly_once`` is deliberately not used: it is not honoured by every Kafka-compatible
    broker, and with Faust 0.15.3 it restores tables empty after a restart. Exactness
    comes instead from checkpointing the last applied offset inside the state and from
    sinks that replace rows by key.
    """
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        datadir=str(Path(settings.state_dir) / settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        # Rejoining a group is held for session_timeout / 2 by some brokers: keep it short.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        producer_max_request_size=settings.max_message_bytes + 65_536,
        consumer_max_fetch_size=settings.max_message_bytes * 2,
        stream_buffer_maxsize=settings.stream_buffer_messages,
        stream_wait_empty=False,
        web_enabled=False,
        autodiscover=False,
        table_cleanup_interval=60.0,
    )


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    protocol = settings.kafka_security_protocol.upper()
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(cafile=settings.kafka_ssl_cafile,
                                     certfile=settings.kafka_ssl_certfile,
                                     keyfile=settings.kafka_ssl_keyfile)
    if protocol.startswith("SASL"):
        keep_out_of_logs(settings.kafka_sasl_password)
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN", ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None
