"""Settings -> keyword arguments of aiokafka clients (TLS, SASL), and a producer stop that
cannot hang, in one place.

Used by the worker's own clients, the serving-code publisher and the telemetry agent; it
imports nothing heavy, so serving code that imports the publisher does not pull in Faust.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from driftline.streams.settings import Settings

log = logging.getLogger(__name__)


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """Security options for aiokafka clients, mirroring the Faust app's credentials."""
    options: dict[str, object] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.upper() in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile)
    if settings.kafka_security_protocol.upper().startswith("SASL"):
        keep_out_of_logs(settings.kafka_sasl_password)
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options


class _Redacting(logging.Filter):
    """Replaces secrets in records of one logger by ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


_REDACTING = _Redacting()


def keep_out_of_logs(secret: str | None) -> None:
    """Redact ``secret`` from aiokafka's connection log: at DEBUG it prints the SASL/PLAIN
    handshake, password included."""
    if not secret:
        return
    _REDACTING.secrets.add(secret)
    conn = logging.getLogger("aiokafka.conn")
    if _REDACTING not in conn.filters:
        conn.addFilter(_REDACTING)


async def stop_producer(producer: Any, grace: float, who: str) -> None:
    """Stop an aiokafka producer within about ``grace`` seconds, even with the broker gone.

    ``who`` names the stopping component in the failure of the batches it gives up on.
    """
    stopping = asyncio.ensure_future(producer.stop())
    await asyncio.wait({stopping}, timeout=grace)
    if not stopping.done():
        # The broker does not answer: fail the batches aiokafka still holds (private API;
        # aiokafka is pinned) so that its stop() returns instead of retrying on.
        producer._message_accumulator.fail_all(KafkaTimeoutError(f"{who} stopped"))
        await asyncio.wait({stopping}, timeout=1.0)
        stopping.cancel()
    try:
        await stopping
    except (Exception, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # A forced stop can break off before aiokafka closes its connections.
        log.debug("%s: forced producer stop", who, exc_info=True)
        await producer.client.close()
