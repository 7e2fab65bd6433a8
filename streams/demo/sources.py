"""Everything the demo sends while its traffic runs: the predictions, labels and outcomes
through the publisher, and on each tick its hosts' telemetry and the slow model's traces."""

from __future__ import annotations

from collections.abc import Callable

from driftline.streams.demo.telemetry import DemoTelemetry
from driftline.streams.demo.traces import DemoTraces
from driftline.streams.demo.traffic import SLOW_MODEL, TrafficPlan, send_traffic
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings

__all__ = ["send_demo"]


async def send_demo(settings: Settings, plan: TrafficPlan,
                    on_progress: Callable[[int], None] | None = None) -> int:
    """Send the plan's traffic with telemetry and traces; how many events were accepted."""
    telemetry = DemoTelemetry(settings, plan.tick_ms / 1000)
    traces = DemoTraces(settings, SLOW_MODEL, plan.tick_ms)

    async def tick(event_time_ms: int, slow: bool) -> None:
        await telemetry.tick(event_time_ms, slow)
        await traces.tick(event_time_ms, slow)

    await telemetry.start()
    await traces.start()
    try:
        async with AsyncPublisher.from_settings(settings) as publisher:
            return await send_traffic(publisher, plan, on_progress, tick)
    finally:
        await traces.stop()
        await telemetry.stop()
