"""Everything one worker keeps for one source partition, checkpointed as one value."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.monitor import Monitor, MonitorConfig, MonitorResult
from driftline.models.events.wire import EventBlock
from driftline.models.quality.monitor import PerformanceConfig, PerformanceMonitor
from driftline.models.telemetry.service_monitor import ServiceConfig, ServiceMonitor
from driftline.models.windows.feature_profiles import ReferenceLookup
from driftline.models.windows.feature_windows import (
    FeatureWindowRow,
    LateEvents,
    PartitionWindows,
    WindowConfig,
)


class PartitionState:
    """Open windows (with the offset of the last message applied) and model health:
    drift from the windows, quality from the labels of windows that are due."""

    def __init__(self, windows: PartitionWindows, monitor: Monitor,
                 performance: PerformanceMonitor, service: ServiceMonitor) -> None:
        self.windows = windows
        self.monitor = monitor
        self.performance = performance
        self.service = service

    @classmethod
    def new(cls, window_config: WindowConfig, monitor_config: MonitorConfig, rules: RulesConfig,
            references: ReferenceLookup | None = None,
            performance_config: PerformanceConfig | None = None) -> PartitionState:
        return cls(PartitionWindows(window_config, references),
                   Monitor(monitor_config, rules, references),
                   PerformanceMonitor(performance_config or PerformanceConfig(), rules),
                   ServiceMonitor(_service_config(window_config, monitor_config), rules))

    @classmethod
    def from_bytes(cls, data: bytes, window_config: WindowConfig,
                   monitor_config: MonitorConfig, rules: RulesConfig,
                   references: ReferenceLookup | None = None,
                   performance_config: PerformanceConfig | None = None) -> PartitionState:
        state = orjson.loads(data)
        monitor = Monitor(monitor_config, rules, references)
        monitor.load_state(state["monitor"])
        performance = PerformanceMonitor(performance_config or PerformanceConfig(), rules)
        if "performance" in state:  # checkpoints from before delayed labels have none
            performance.load_state(state["performance"])
        service = ServiceMonitor(_service_config(window_config, monitor_config), rules)
        if "service" in state:
            service.load_state(state["service"])
        return cls(PartitionWindows.from_state(window_config, state["windows"], references),
                   monitor, performance, service)

    def apply(self, blocks: Sequence[tuple[int, EventBlock]]
              ) -> tuple[list[LateEvents], list[FeatureWindowRow], MonitorResult]:
        """Apply messages in offset order: late events, closed windows, and their judgement.

        The monitor sees each message and each closing window in message order, exactly as
        if the messages had come one at a time, so what a detector attributes to which
        window does not depend on batching.
        """
        health = MonitorResult()
        self.windows.on_message = self.monitor.observe_block

        def closed(rows: Sequence[FeatureWindowRow]) -> None:
            health.extend(self.monitor.observe(rows))
            self.performance.observe_closed(rows)
            service_rows, alerts = self.service.observe(rows)
            health.service += service_rows
            health.alerts += alerts

        self.windows.on_closed = closed
        try:
            late = self.windows.apply(blocks)
            rows = self.windows.close_ready()
        finally:
            self.windows.on_message = self.windows.on_closed = None
        return late, rows, health

    def to_bytes(self) -> bytes:
        return orjson.dumps({"windows": self.windows.to_state(),
                             "monitor": self.monitor.to_state(),
                             "performance": self.performance.to_state(),
                             "service": self.service.to_state()},
                            option=orjson.OPT_SERIALIZE_NUMPY)


def _service_config(windows: WindowConfig, monitor: MonitorConfig) -> ServiceConfig:
    return ServiceConfig(window_ms=windows.window_ms, baseline_windows=monitor.baseline_windows)
