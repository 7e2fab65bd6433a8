"""The worker's ``/metrics`` for Prometheus.

Counters are read from the processors' own statistics when Prometheus scrapes (nothing is
counted twice, and the hot path does no more than it did); the two latency histograms are
observed where a checkpoint and a ClickHouse write happen. Names follow Prometheus'
conventions: a unit in the name, ``_total`` counters, labels of low cardinality (a topic's
role, a table, a reason class, a category and severity; never a model or a request).

Served by a small aiohttp server on the worker's own event loop, so a scrape reads state
between batches, never in the middle of one: ``DRIFTLINE_METRICS_PORT`` (0: off) on
``DRIFTLINE_METRICS_HOST`` (``127.0.0.1``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from driftline.models.alerting.incidents import open_incidents

__all__ = ["COUNTERS", "GAUGES", "WorkerMetrics", "reason_class"]

log = logging.getLogger(__name__)

#: Dead-letter reasons (one line of free text) in a few classes, first match wins.
_REASONS = (
    ("oversize", re.compile(r"bytes, over the|too large|truncated", re.I)),
    ("not_json", re.compile(r"not valid JSON|expected a JSON object|no value", re.I)),
    ("not_protobuf", re.compile(r"protobuf", re.I)),
    ("unknown_type", re.compile(r"unknown type|not a run event", re.I)),
    ("wrong_key", re.compile(r"message key", re.I)),
    ("bad_event_time", re.compile(r"event_?time|eventTime", re.I)),
    ("missing_field", re.compile(r"lacks required|needs '", re.I)),
)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)


COUNTERS: Mapping[str, str] = {
    "driftline_messages_total": "Kafka messages read, per source topic",
    "driftline_events_total": "events processed (predictions, labels, outcomes, "
                              "telemetry samples, spans' run events), per kind",
    "driftline_late_events_total": "events that came after their window closed, "
                                   "counted and not merged, per source topic",
    "driftline_windows_written_total": "closed windows written to ClickHouse, per table",
    "driftline_alerts_total": "alert state changes published, per source processor",
    "driftline_forwarded_messages_total": "messages of a standard's topic (OpenLineage, "
                                          "OpenTelemetry) forwarded to driftline's own",
}
GAUGES: Mapping[str, str] = {
    "driftline_consumer_lag_messages": "messages in a source partition this worker holds "
                                       "not yet processed and checkpointed",
}


def reason_class(reason: str) -> str:
    """A dead letter's reason as a label value.

    >>> reason_class("message is 9000000 bytes, over the 8388608-byte limit")
    'oversize'
    >>> reason_class("'event_time' 12 is out of range: send UTC epoch milliseconds")
    'bad_event_time'
    >>> reason_class("feature 'x' must be a list of 3 values")
    'invalid'
    """
    for name, pattern in _REASONS:
        if pattern.search(reason):
            return name
    return "invalid"


class WorkerMetrics:
    """One worker's metrics: histograms observed in place, counters read from sources.

    ``add_source(fn)`` registers a function that yields ``(metric, labels, value)`` for the
    counters and gauges it knows (``metric`` one of :data:`COUNTERS` or :data:`GAUGES`);
    they are summed per (metric, labels) at each scrape.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.checkpoint_seconds = Histogram(
            "driftline_checkpoint_seconds", "time to write a batch's rows, alerts and "
            "checkpoint, per processor", ["processor"], buckets=_SECONDS_BUCKETS,
            registry=self.registry)
        self.clickhouse_write_seconds = Histogram(
            "driftline_clickhouse_write_seconds", "time of one ClickHouse insert of a batch's "
            "rows", buckets=_SECONDS_BUCKETS, registry=self.registry)
        self.dead_letters: dict[tuple[str, str], int] = {}
        self._sources: list[Callable[[], Iterable[tuple[str, dict[str, str], float]]]] = []
        self.registry.register(_Collected(self))

    def add_source(self, source: Callable[[], Iterable[tuple[str, dict[str, str], float]]]
                   ) -> None:
        self._sources.append(source)

    def dead_letter(self, topic: str, reason: str) -> None:
        key = (topic, reason_class(reason))
        self.dead_letters[key] = self.dead_letters.get(key, 0) + 1

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def collect(self) -> Iterator[Metric]:
        sums: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
            name: {} for name in (*COUNTERS, *GAUGES)}
        for source in self._sources:
            try:
                for name, labels, value in source():
                    key = tuple(sorted(labels.items()))
                    sums[name][key] = sums[name].get(key, 0.0) + value
            except Exception:  # a scrape must not fail for one source: say so, go on
                log.exception("a metrics source failed; its metrics are left out this scrape")
        for name, samples in sums.items():
            names = sorted({k for key in samples for k, _ in key})
            family: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(name.removesuffix("_total"), COUNTERS[name],
                                    labels=names) if name in COUNTERS else
                GaugeMetricFamily(name, GAUGES[name], labels=names))
            for key, value in sorted(samples.items()):
                labels = dict(key)
                family.add_metric([labels.get(n, "") for n in names], value)
            yield family
        letters = CounterMetricFamily("driftline_dead_letters", "messages sent to the "
                                      "dead-letter topic, per source topic and reason class",
                                      labels=["topic", "reason"])
        for (topic, reason), count in sorted(self.dead_letters.items()):
            letters.add_metric([topic, reason], count)
        yield letters
        incidents = GaugeMetricFamily("driftline_open_incidents", "incidents open in the "
                                      "partitions this worker holds, per category and "
                                      "severity", labels=["category", "severity"])
        for (category, severity), count in sorted(open_incidents().items()):
            incidents.add_metric([category, severity], count)
        yield incidents

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """Serve ``/metrics`` on ``host:port``; stop with the runner's ``cleanup()``."""
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(body=self.exposition(),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("metrics for Prometheus at http://%s:%d/metrics", host, port)
        return runner


class _Collected(Collector):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        return self.metrics.collect()
