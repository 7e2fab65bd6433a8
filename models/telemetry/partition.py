"""Everything one worker keeps for one partition of the telemetry topic, checkpointed as
one record: the open windows and the infrastructure incidents of its hosts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from driftline.models import state_codec
from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.rules import RulesConfig
from driftline.models.telemetry.aggregates import GpuWindowRow, HostWindowRow
from driftline.models.telemetry.infrastructure_monitor import InfrastructureMonitor
from driftline.models.telemetry.windows import TelemetryConfig, TelemetryMessage, TelemetryWindows
from driftline.models.windows.feature_windows import LateEvents

__all__ = ["TelemetryPartition", "TelemetryResult"]


@dataclasses.dataclass
class TelemetryResult:
    """What a batch of telemetry messages produced."""

    late: list[LateEvents] = dataclasses.field(default_factory=list)
    gpu_rows: list[GpuWindowRow] = dataclasses.field(default_factory=list)
    host_rows: list[HostWindowRow] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)


class TelemetryPartition:
    def __init__(self, windows: TelemetryWindows, monitor: InfrastructureMonitor) -> None:
        self.windows = windows
        self.monitor = monitor

    @classmethod
    def new(cls, config: TelemetryConfig, rules: RulesConfig) -> TelemetryPartition:
        return cls(TelemetryWindows(config), InfrastructureMonitor(rules))

    @classmethod
    def from_bytes(cls, data: bytes, config: TelemetryConfig,
                   rules: RulesConfig) -> TelemetryPartition:
        state = state_codec.decode(data)
        monitor = InfrastructureMonitor(rules)
        monitor.load_state(state["monitor"])
        return cls(TelemetryWindows.from_state(config, state["windows"]), monitor)

    def apply(self, messages: Iterable[tuple[int, TelemetryMessage]]) -> TelemetryResult:
        """Apply (offset, message) pairs in offset order; judge each window as it closes."""
        late, closed = self.windows.apply(messages)
        return TelemetryResult(late, [gpu for window in closed for gpu in window.gpus],
                               [window.host for window in closed],
                               [alert for window in closed for alert in self.monitor.judge(window)])

    def to_bytes(self) -> bytes:
        return state_codec.encode({"windows": self.windows.to_state(),
                                   "monitor": self.monitor.to_state()})
