"""Settings -> keyword arguments of aiokafka clients (TLS, SASL), in one place.

Used by the worker's own clients and by the serving-code publisher; it imports nothing
heavy, so serving code that imports the publisher does not pull in Faust.
"""

from __future__ import annotations

from streams.settings import Settings


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """Security options for aiokafka clients, mirroring the Faust app's credentials."""
    options: dict[str, object] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.upper() in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile)
    if settings.kafka_security_protocol.upper().startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    return options
