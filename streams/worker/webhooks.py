"""Deliver alerts to webhooks: POST each alert a target wants, retrying with backoff.

The alerts topic is read by its own agent (consumer group of the worker), in order per
model: an alert is handed to every target that wants it before the next one, and the offset
is committed after that. A crash between a delivery and its commit sends the alert again
with the same ``Idempotency-Key`` (see :mod:`driftline.models.alerting.webhooks`).

A target answering 2xx has it; 409 Conflict means it already had that key (Airflow answers
so for a DAG run id it has seen); 408, 429 and 5xx, or no answer, are retried after 0.5 s,
1 s, 2 s ... up to 60 s apart, for ``DRIFTLINE_WEBHOOK_ATTEMPTS`` tries; any other answer
is final. An alert a target never took is logged and counted, and delivery goes on: one
broken endpoint must not hold back every other alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.webhooks import WebhookTarget, alert_key, body, headers, render

log = logging.getLogger(__name__)

_RETRIED = {408, 429}
_MAX_PAUSE = 60.0


class WebhookStats:
    def __init__(self) -> None:
        self.delivered = 0
        self.retries = 0
        self.failed = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class WebhookSender:
    def __init__(self, targets: Sequence[WebhookTarget], attempts: int = 8,
                 first_pause: float = 0.5, timeout: float = 10.0) -> None:
        self.targets = list(targets)
        self.attempts = attempts
        self.first_pause = first_pause
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.stats = WebhookStats()
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, alert: Alert) -> None:
        """Send ``alert`` to every target that wants it (targets side by side)."""
        wanted = [t for t in self.targets if t.wants(alert)]
        if wanted:
            key = alert_key(alert)
            await asyncio.gather(*(self._post(render(alert, t), key, t) for t in wanted))

    async def deliver_document(self, document: Mapping[str, Any], text: str, key: str) -> None:
        """Send a document (a retraining request) to every target, under ``key``."""
        await asyncio.gather(*(self._post(body(document, text, key, t), key, t)
                               for t in self.targets))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, payload: bytes, key: str, target: WebhookTarget) -> None:
        pause, reason, attempt = self.first_pause, "", 0
        for attempt in range(1, self.attempts + 1):
            outcome = await self._try(payload, key, target)
            if outcome is None:
                self.stats.delivered += 1
                return
            reason = outcome
            if outcome.startswith("final"):
                break
            if attempt < self.attempts:
                self.stats.retries += 1
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)
        self.stats.failed += 1
        log.error("%s not delivered to %s after %d tries: %s", key, target.url, attempt,
                  reason.removeprefix("final: "))

    async def _try(self, payload: bytes, key: str, target: WebhookTarget) -> str | None:
        """None when delivered; else why not ("final: ..." when retrying cannot help)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        sent = headers(key, target, payload, int(time.time()))
        try:
            async with self._session.post(target.url, data=payload, headers=sent) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"no answer ({type(exc).__name__})"
        if 200 <= status < 300 or status == 409:
            return None
        if status in _RETRIED or status >= 500:
            return f"HTTP {status}"
        return f"final: HTTP {status}"
