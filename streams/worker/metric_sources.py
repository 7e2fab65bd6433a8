"""What the worker's ``/metrics`` reads from its processors, scrape by scrape (see
:mod:`driftline.streams.worker.metrics`): their running totals, and the consumer's lag."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import faust

from driftline.streams.settings import Settings
from driftline.streams.worker.commits import DurableOffsets
from driftline.streams.worker.feature_windows import FeatureWindowProcessor
from driftline.streams.worker.idle import consumer_highwater
from driftline.streams.worker.metrics import WorkerMetrics
from driftline.streams.worker.pipelines import PipelineProcessor
from driftline.streams.worker.service_chains import ChainProcessor
from driftline.streams.worker.services import WorkerServices
from driftline.streams.worker.telemetry_windows import TelemetryWindowProcessor

Sample = tuple[str, dict[str, str], float]


def register_sources(metrics: WorkerMetrics, app: faust.App, settings: Settings,
                     features: FeatureWindowProcessor, telemetry: TelemetryWindowProcessor,
                     pipelines: PipelineProcessor, chains: ChainProcessor,
                     services: WorkerServices) -> None:
    def processors() -> Iterator[Sample]:
        f, t = features.stats, telemetry.stats
        yield "driftline_messages_total", {"topic": "predictions"}, f.messages
        yield "driftline_events_total", {"kind": "prediction"}, f.events
        yield "driftline_late_events_total", {"topic": "predictions"}, f.late_events
        yield "driftline_windows_written_total", {"table": "feature_windows"}, f.windows_written
        yield "driftline_alerts_total", {"processor": "feature_windows"}, f.alerts
        yield "driftline_messages_total", {"topic": "telemetry"}, t.messages
        yield "driftline_events_total", {"kind": "telemetry_sample"}, t.samples
        yield "driftline_late_events_total", {"topic": "telemetry"}, t.late_samples
        yield "driftline_windows_written_total", {"table": "gpu_windows"}, t.gpu_windows
        yield "driftline_windows_written_total", {"table": "host_windows"}, t.host_windows
        yield "driftline_alerts_total", {"processor": "telemetry"}, t.alerts
        yield "driftline_forwarded_messages_total", {"topic": "lineage"}, pipelines.forwarded
        yield "driftline_events_total", {"kind": "run_event"}, pipelines.runs
        yield "driftline_alerts_total", {"processor": "pipelines"}, pipelines.alerts
        yield "driftline_forwarded_messages_total", {"topic": "traces"}, chains.forwarded
        yield "driftline_windows_written_total", {"table": "service_chains"}, chains.rows
        yield "driftline_late_events_total", {"topic": "traces"}, chains.late
        yield "driftline_alerts_total", {"processor": "service_chains"}, chains.alerts
        if services.started:  # the label and outcome joins exist once the sink is up
            yield "driftline_events_total", {"kind": "label"}, services.joiner.stats.labels
            yield "driftline_events_total", {"kind": "outcome"}, services.outcomes.stats.labels

    metrics.add_source(processors)
    metrics.add_source(lag_source(app, features.offsets, (
        settings.predictions_topic, settings.labels_topic, settings.telemetry_topic,
        settings.pipelines_topic, settings.service_chains_topic)))


def lag_source(app: faust.App, offsets: DurableOffsets, topics: tuple[str, ...]
               ) -> Callable[[], Iterator[Sample]]:
    """Per source partition this worker holds: the consumer's high watermark minus the next
    offset that is durable (processed and checkpointed); left out while either is unknown."""
    highwaters = {topic: consumer_highwater(app, topic) for topic in topics}

    def lag() -> Iterator[Sample]:
        try:
            assigned = app.consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet: nothing to say
            return
        for tp in sorted(assigned):
            if tp.topic not in highwaters:
                continue
            highwater = highwaters[tp.topic](tp.partition)
            durable = offsets.next_offset(tp.topic, tp.partition)
            if highwater is None or durable is None:
                continue
            yield ("driftline_consumer_lag_messages",
                   {"topic": tp.topic, "partition": str(tp.partition)},
                   max(0, highwater - durable))

    return lag
