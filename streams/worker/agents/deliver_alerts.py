"""Agent: alerts topic -> webhooks (the work is in :mod:`driftline.streams.worker.webhooks`).
Off unless ``DRIFTLINE_WEBHOOKS`` names a target."""

from __future__ import annotations

import logging

import faust
from faust.types import StreamT

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.webhooks import parse_targets
from driftline.streams.settings import Settings
from driftline.streams.worker.topics import Topics
from driftline.streams.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics) -> WebhookSender | None:
    targets = parse_targets(settings.webhooks)
    if not targets:
        return None
    sender = WebhookSender(targets, settings.webhook_attempts)

    @app.agent(topics.alerts, name="deliver_alerts")
    async def deliver_alerts(stream: StreamT[bytes]) -> None:
        try:
            async for value in stream:
                try:
                    alert = Alert.from_json(value)
                except ValueError as exc:  # not ours to judge; never stop delivering
                    log.warning("skipping an alerts-topic message that is not an alert: %s",
                                exc)
                    continue
                await sender.deliver(alert)
        finally:
            await sender.close()

    @app.timer(interval=10.0, name="log_webhook_stats")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("webhooks: %s", sender.stats.as_dict())

    return sender
