"""The telemetry agent's ``/metrics`` for Prometheus: samples taken, sent and dropped (its
buffer full while Kafka is away, or unsent at stop), send errors, and what waits in the
buffer. Read from the agent's counters at each scrape, on ``DRIFTLINE_AGENT_METRICS_PORT``
(0: off) of ``DRIFTLINE_METRICS_HOST``; prometheus-client's own small server, in a thread
of its own (the agent has no web server, and reading a few counters needs no lock)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from driftline.streams.agent.agent import TelemetryAgent

__all__ = ["agent_registry", "serve_agent_metrics"]


class _AgentCollector(Collector):
    def __init__(self, agent: TelemetryAgent) -> None:
        self.agent = agent

    def collect(self) -> Iterable[Any]:
        stats, host = self.agent.stats, self.agent.config.host
        for name, value, what in (
                ("driftline_agent_samples", stats.sampled, "samples taken"),
                ("driftline_agent_sent_samples", stats.sent, "samples acknowledged by Kafka"),
                ("driftline_agent_dropped_samples", stats.dropped,
                 "samples dropped: the buffer was full (Kafka away), or unsent at stop"),
                ("driftline_agent_send_errors", stats.send_errors, "failed sends (retried)")):
            family = CounterMetricFamily(name, what, labels=["host"])
            family.add_metric([host], value)
            yield family
        buffered = GaugeMetricFamily("driftline_agent_buffered_samples", "samples waiting to "
                                     "be sent", labels=["host"])
        buffered.add_metric([host], self.agent.buffered)
        yield buffered


def agent_registry(agent: TelemetryAgent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AgentCollector(agent))
    return registry


def serve_agent_metrics(agent: TelemetryAgent, host: str, port: int) -> None:
    """Serve the agent's ``/metrics`` on ``host:port`` until the process ends."""
    start_http_server(port, addr=host, registry=agent_registry(agent))
