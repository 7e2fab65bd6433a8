"""Agent: alerts topic -> webhooks and retraining requests (the work is in
:mod:`driftline.streams.worker.webhooks` and :mod:`driftline.streams.worker.retraining`).
Off unless ``DRIFTLINE_WEBHOOKS`` names a target or the rules enable retraining."""

from __future__ import annotations

import logging

import faust
from faust.types import StreamT

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.rules import RulesConfig
from driftline.models.alerting.webhooks import parse_targets
from driftline.streams.settings import Settings
from driftline.streams.worker.retraining import RetrainingRequester
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.topics import Topics
from driftline.streams.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics, services: WorkerServices,
           rules: RulesConfig) -> None:
    targets = parse_targets(settings.webhooks)
    retraining = any(layer.get("enabled") for layer in rules.retraining.values())
    if not targets and not retraining:
        return
    sender = WebhookSender(targets, settings.webhook_attempts) if targets else None
    requests_to = parse_targets(settings.retraining_webhooks, "DRIFTLINE_RETRAINING_WEBHOOKS")
    request_sender = (WebhookSender(requests_to, settings.webhook_attempts) if requests_to
                      else None)

    async def send_request(key: bytes, value: bytes) -> None:
        await (await topics.retraining.send(key=key, value=value))

    requester = RetrainingRequester(rules, send_request, request_sender) if retraining else None

    @app.agent(topics.alerts, name="act_on_alerts")
    async def act_on_alerts(stream: StreamT[bytes]) -> None:
        if requester is not None:
            await services.start()  # the evidence is read from ClickHouse
            requester.client = services.sink.client
            requester.database = settings.clickhouse_database
        try:
            async for value in stream:
                try:
                    alert = Alert.from_json(value)
                except ValueError as exc:  # not ours to judge; never stop delivering
                    log.warning("skipping an alerts-topic message that is not an alert: %s",
                                exc)
                    continue
                if sender is not None:
                    await sender.deliver(alert)
                if requester is not None:
                    await requester.consider(alert)
        finally:
            for each in (sender, request_sender):
                if each is not None:
                    await each.close()
            if requester is not None:
                await services.stop()

    @app.timer(interval=10.0, name="log_alert_actions")  # type: ignore[untyped-decorator]
    async def log_stats() -> None:
        log.info("webhooks: %s; retraining requests: %s",
                 sender.stats.as_dict() if sender else "off",
                 requester.requests if requester else "off")
