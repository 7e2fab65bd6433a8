"""Each service's latest judged hops, read from the compacted hops topic by every worker,
to say in a model's latency alert which downstream hop explains it."""

from __future__ import annotations

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

    def windows(self, service: str) -> list[HopWindow]:
        return list(self._windows.get(service, ()))

    def explain(self, alert: Alert) -> str:
        """For an open or escalated service latency alert: the downstream hop that slowed
        (see :func:`~driftline.models.traces.explain.explain_latency`); else ``""``."""
        if (not alert.dedup_key.startswith("service:") or alert.feature != "latency"
                or alert.state == "resolved"):
            return ""
        overrides = self.settings.models.get(alert.model)
        service = (overrides.service if overrides is not None else None) or alert.model
        return explain_latency(service, self.windows(service), alert.first_seen,
                               alert.window_end)

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
