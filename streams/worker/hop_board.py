"""Each service's latest judged hops, read from the compacted hops topic by every worker,
to say in a model's latency alert which downstream hop explains it."""

from __future__ import annotations

import asyncio
import collections
import logging

import orjson

from driftline.models.alerting.alerts import Alert
from driftline.models.traces.explain import HopWindow, explain_latency
from driftline.streams.compacted import CompactedReader
from driftline.streams.settings import Settings

__all__ = ["HopBoard"]

log = logging.getLogger(__name__)

#: Hop windows kept per service: enough to cover an incident's first bad windows.
KEPT = 200


class HopBoard(CompactedReader):
    def __init__(self, settings: Settings, poll_timeout_ms: int = 500) -> None:
        super().__init__(settings, settings.service_hops_topic, "driftline-service-hops",
                         poll_timeout_ms)
        self._windows: dict[str, collections.deque[HopWindow]] = {}
        #: How long an explanation waits for the hops of the alert's windows.
        self.wait_seconds = 5.0

    def windows(self, service: str) -> list[HopWindow]:
        return list(self._windows.get(service, ()))

    async def explain(self, alert: Alert) -> str:
        """For an open or escalated service latency alert: the downstream hop that slowed
        (see :func:`~driftline.models.traces.explain.explain_latency`); else ``""``.

        The hops of the alert's windows come from another processor, which may be a moment
        behind this one: for a traced service, this waits up to :attr:`wait_seconds` until
        the board holds a window of its hops reaching the alert's end (an incident opens
        rarely, so the wait costs its partition little)."""
        if (not alert.dedup_key.startswith("service:") or alert.feature != "latency"
                or alert.state == "resolved"):
            return ""
        overrides = self.settings.models.get(alert.model)
        service = (overrides.service if overrides is not None else None) or alert.model
        if service in self._windows:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.wait_seconds
            # Polled: the board is fed by the reader's task; once per incident, briefly.
            while self._behind(service, alert.window_end) and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return explain_latency(service, self.windows(service), alert.first_seen,
                               alert.window_end)

    def _behind(self, service: str, end: int) -> bool:
        return max(w.window_end for w in self._windows[service]) < end

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> bool:
        if value is None:
            return False
        try:
            doc = orjson.loads(value)
            hops = [HopWindow.from_json(h) for h in doc["hops"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("skipping a service-hops record at offset %d: %r", offset, exc)
            return False
        for hop in hops:
            kept = self._windows.setdefault(hop.service, collections.deque(maxlen=KEPT))
            if hop not in kept:
                kept.append(hop)
        return bool(hops)
