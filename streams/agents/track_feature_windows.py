"""Agent: predictions topic -> feature windows in ClickHouse (thin: all work is elsewhere)."""

from __future__ import annotations

import logging

import faust
import orjson
from faust.types import StreamT

from sinks.clickhouse import ClickHouseSink
from streams.feature_windows import FeatureWindowProcessor
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger(__name__)


def attach(app: faust.App, settings: Settings, topics: Topics,
           window_states: faust.Table) -> FeatureWindowProcessor:
    """Register the agent and its idle timer on ``app``; return the processor they share."""
    sink = ClickHouseSink(settings)
    processor = FeatureWindowProcessor(settings, window_states, topics.dead_letters, sink.write)

    @app.agent(topics.predictions, name="track_feature_windows")
    async def track_feature_windows(stream: StreamT[bytes]) -> None:
        await sink.start()
        try:
            async for events in stream.take_events(settings.batch_max_messages,
                                                   within=settings.checkpoint_seconds):
                await processor.process(events)
        finally:
            await sink.close()

    @app.timer(interval=max(1.0, settings.idle_close_seconds / 4), name="close_idle_windows")
    async def close_idle_windows() -> None:
        # The watermark goes through the topic, so closing windows of a quiet partition is
        # a message in the log like any other: a replay makes the same decision.
        for partition, model, event_time in processor.idle_watermarks():
            await topics.predictions.send(
                key=model.encode(), partition=partition,
                value=orjson.dumps({"type": "watermark", "model": model,
                                    "event_time": event_time}))

    @app.on_partitions_revoked.connect
    async def forget_revoked(app: faust.App, revoked: set[faust.types.TP],
                             **kwargs: object) -> None:
        processor.forget({tp.partition for tp in revoked if tp.topic == topics.predictions.get_topic_name()})

    @app.timer(interval=10.0, name="log_feature_window_stats")
    async def log_stats() -> None:
        log.info("feature windows: %s", processor.stats.as_dict())

    return processor
