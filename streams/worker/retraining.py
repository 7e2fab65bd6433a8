"""Turn incidents into retraining requests, with the evidence ClickHouse holds for them.

On each ``open`` or ``escalated`` alert whose model's policy asks for retraining
(:class:`~driftline.models.alerting.retraining.RetrainingPolicy`), read the incident's
windows back: the features whose scores were judged bad (worst value each), the version's
label coverage and accuracy over the incident, the reference it was judged against. If the
coverage is enough, the request goes to the retraining topic (keyed by model), the
``retraining_requests`` table and the retraining webhooks, under one id per incident.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.retraining import Evidence, request_document
from driftline.models.alerting.rules import RulesConfig
from driftline.streams.worker.webhooks import WebhookSender

log = logging.getLogger(__name__)

_COLUMNS = ["id", "model", "model_version", "requested_at", "incident_id", "dedup_key",
            "window_start", "window_end", "label_coverage", "request"]
_DRIFTED_LIMIT = 20


class RetrainingRequester:
    def __init__(self, rules: RulesConfig, send: Any, webhooks: WebhookSender | None) -> None:
        self.rules = rules
        #: ``async send(key: bytes, value: bytes)``: produce to the retraining topic.
        self.send = send
        self.webhooks = webhooks
        self.requests = 0
        self.client: AsyncClient | None = None
        self.database = ""
        self._made: set[str] = set()  # incidents already requested by this process

    async def consider(self, alert: Alert) -> dict[str, Any] | None:
        """The request ``alert`` makes, sent; None when it makes none."""
        policy = self.rules.retraining_policy(alert.model)
        category = alert.dedup_key.split(":", 1)[0]
        if not policy.wants(alert.state, alert.severity, category,
                            first_seen=alert.first_seen, last_seen=alert.last_seen):
            return None
        evidence = await self.evidence(alert)
        if not policy.covered(evidence.label_coverage):
            log.info("no retraining for %s %s: label coverage %s below %s", alert.model,
                     alert.version, evidence.label_coverage, policy.min_label_coverage)
            return None
        request = request_document(alert, evidence, time.time_ns() // 1_000_000)
        if request["id"] in self._made:  # escalated after open: one request per incident
            return None
        await self.send(alert.model.encode(), orjson.dumps(request))
        await self._store(request)
        if self.webhooks is not None:
            await self.webhooks.deliver_document(
                request, f":repeat: retraining requested for {alert.model} {alert.version}: "
                         f"{alert.summary}", request["id"])
        self._made.add(request["id"])
        self.requests += 1
        return request

    async def evidence(self, alert: Alert) -> Evidence:
        if self.client is None:
            return Evidence()
        params = {"model": alert.model, "version": alert.version,
                  "start": alert.first_seen, "end": alert.last_seen}
        where = ("model = {model:String} AND model_version = {version:String} AND window_start"
                 " >= fromUnixTimestamp64Milli({start:Int64}, 'UTC') AND window_start < "
                 "fromUnixTimestamp64Milli({end:Int64}, 'UTC')")
        drifted = await self.client.query(
            f"SELECT feature, metric, max(value) AS worst FROM {self.database}.drift_scores "
            f"FINAL WHERE {where} AND verdict IN ('warning', 'critical') "
            f"GROUP BY feature, metric ORDER BY worst DESC LIMIT {_DRIFTED_LIMIT}",
            parameters=params)
        quality = await self.client.query(
            f"SELECT sum(n_labeled), sum(n_predicted), sum(correct_count) "
            f"FROM {self.database}.performance FINAL WHERE {where}", parameters=params)
        reference = await self.client.query(
            f"SELECT argMax(reference_id, window_start) FROM {self.database}.drift_scores "
            "FINAL WHERE model = {model:String} AND model_version = {version:String}",
            parameters=params)
        labeled, predicted, correct = quality.result_rows[0] if quality.result_rows else (0, 0, 0)
        return Evidence(
            tuple((f, m, float(v)) for f, m, v in drifted.result_rows),
            labeled / predicted if predicted else None,
            correct / labeled if labeled and correct is not None else None,
            str(reference.result_rows[0][0]) if reference.result_rows else "")

    async def _store(self, request: dict[str, Any]) -> None:
        if self.client is None:
            return
        await self.client.insert("retraining_requests", [[
            request["id"], request["model"], request["version"], request["requested_at"],
            request["incident"]["id"], request["incident"]["dedup_key"],
            request["window_start"], request["window_end"], request["label_coverage"],
            orjson.dumps(request).decode()]], column_names=_COLUMNS, database=self.database)
