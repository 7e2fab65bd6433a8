"""Everything one worker keeps for one source partition, checkpointed as one value."""

from __future__ import annotations

import orjson

from models.alert_rules import RulesConfig
from models.feature_profiles import ReferenceLookup
from models.monitor import Monitor, MonitorConfig
from models.windows import PartitionWindows, WindowConfig


class PartitionState:
    """Open windows (with the offset of the last message applied) and model health."""

    def __init__(self, windows: PartitionWindows, monitor: Monitor) -> None:
        self.windows = windows
        self.monitor = monitor

    @classmethod
    def new(cls, window_config: WindowConfig, monitor_config: MonitorConfig, rules: RulesConfig,
            references: ReferenceLookup | None = None) -> PartitionState:
        return cls(PartitionWindows(window_config, references),
                   Monitor(monitor_config, rules, references))

    @classmethod
    def from_bytes(cls, data: bytes, window_config: WindowConfig,
                   monitor_config: MonitorConfig, rules: RulesConfig,
                   references: ReferenceLookup | None = None) -> PartitionState:
        state = orjson.loads(data)
        monitor = Monitor(monitor_config, rules, references)
        monitor.load_state(state["monitor"])
        return cls(PartitionWindows.from_state(window_config, state["windows"], references),
                   monitor)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"windows": self.windows.to_state(),
                             "monitor": self.monitor.to_state()},
                            option=orjson.OPT_SERIALIZE_NUMPY)
