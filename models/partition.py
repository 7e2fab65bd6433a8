"""Everything one worker keeps for one source partition: one :class:`PartitionState` per
model (:class:`PartitionModels`), each checkpointed as one record."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from driftline.models import state_codec
from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.rules import RulesConfig
from driftline.models.data_quality.monitor import DataQualityMonitor, Registered
from driftline.models.data_quality.silence import SilenceWatch, Silent
from driftline.models.drift.monitor import Monitor, MonitorConfig, MonitorResult
from driftline.models.events.wire import EventBlock
from driftline.models.outcomes.monitor import OutcomeConfig, OutcomeMonitor
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
    drift from the windows, quality from the labels of windows that are due. Holds any
    number of models; the worker gives each model its own."""

    def __init__(self, windows: PartitionWindows, monitor: Monitor,
                 performance: PerformanceMonitor, service: ServiceMonitor,
                 data_quality: DataQualityMonitor, outcomes: OutcomeMonitor) -> None:
        self.windows = windows
        self.monitor = monitor
        self.performance = performance
        self.service = service
        self.data_quality = data_quality
        self.outcomes = outcomes
        self.silent = Silent()

    @classmethod
    def new(cls, window_config: WindowConfig, monitor_config: MonitorConfig, rules: RulesConfig,
            references: ReferenceLookup | None = None,
            performance_config: PerformanceConfig | None = None,
            outcome_config: OutcomeConfig | None = None,
            registered: Registered | None = None) -> PartitionState:
        return cls(PartitionWindows(window_config, references, rules.declared_range),
                   Monitor(monitor_config, rules, references),
                   PerformanceMonitor(performance_config or PerformanceConfig(), rules),
                   ServiceMonitor(_service_config(window_config, monitor_config), rules),
                   DataQualityMonitor(rules, registered=registered),
                   OutcomeMonitor(outcome_config or OutcomeConfig(), rules))

    @classmethod
    def from_bytes(cls, data: bytes, window_config: WindowConfig,
                   monitor_config: MonitorConfig, rules: RulesConfig,
                   references: ReferenceLookup | None = None,
                   performance_config: PerformanceConfig | None = None,
                   outcome_config: OutcomeConfig | None = None,
                   registered: Registered | None = None) -> PartitionState:
        state = state_codec.decode(data)
        monitor = Monitor(monitor_config, rules, references)
        monitor.load_state(state["monitor"])
        performance = PerformanceMonitor(performance_config or PerformanceConfig(), rules)
        if "performance" in state:  # checkpoints from before delayed labels have none
            performance.load_state(state["performance"])
        service = ServiceMonitor(_service_config(window_config, monitor_config), rules)
        if "service" in state:
            service.load_state(state["service"])
        data_quality = DataQualityMonitor(rules, registered=registered)
        if "data_quality" in state:
            data_quality.load_state(state["data_quality"])
        outcomes = OutcomeMonitor(outcome_config or OutcomeConfig(), rules)
        if "outcomes" in state:
            outcomes.load_state(state["outcomes"])
        loaded = cls(PartitionWindows.from_state(window_config, state["windows"], references,
                                                 rules.declared_range),
                     monitor, performance, service, data_quality, outcomes)
        loaded.silent = Silent(*state.get("silent", (None, "")))
        return loaded

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
            self.outcomes.observe_closed(rows)
            service_rows, alerts = self.service.observe(rows)
            health.service += service_rows
            health.alerts += alerts
            # The window's rows are of one version; checked against what drift used.
            quality_rows, alerts = self.data_quality.observe(
                rows, self.monitor.judged_against(rows[0].model, rows[0].version))
            health.data_quality += quality_rows
            health.alerts += alerts

        self.windows.on_closed = closed
        try:
            late = self.windows.apply(blocks)
            rows = self.windows.close_ready()
        finally:
            self.windows.on_message = self.windows.on_closed = None
        return late, rows, health

    def to_bytes(self) -> bytes:
        return state_codec.encode({"windows": self.windows.to_state(),
                                   "monitor": self.monitor.to_state(),
                                   "performance": self.performance.to_state(),
                                   "service": self.service.to_state(),
                                   "data_quality": self.data_quality.to_state(),
                                   "outcomes": self.outcomes.to_state(),
                                   "silent": [self.silent.since, self.silent.version]})


class PartitionModels:
    """One source partition as one :class:`PartitionState` per model, each checkpointed
    on its own: a batch rewrites the records of the models it touched, not the partition.

    Every part of a model's state depends on that model's messages alone (they are keyed
    by model, so in offset order on one partition), except watermarks that name no model:
    those move every model the partition holds at that offset. Each model's state keeps
    the offset of the last message applied to it, and :attr:`applied_offset` is the
    partition's (every model holds everything up to it), so after a crash between two
    models' records each skips exactly what it already holds.
    """

    def __init__(self, new_state: Callable[[], PartitionState],
                 silence: SilenceWatch | None = None) -> None:
        self.applied_offset = -1
        self.states: dict[str, PartitionState] = {}
        self._new_state = new_state
        #: Judges models gone silent while the partition flows (None: not judged).
        self.silence = silence

    def state(self, model: str) -> PartitionState:
        state = self.states.get(model)
        if state is None:
            state = self.states[model] = self._new_state()
        return state

    def settle_kinds(self, block: EventBlock) -> None:
        """Drop, as invalid, a column of a kind its feature does not hold."""
        if block.kind == "prediction":
            self.state(block.model).windows.settle_kinds(block)

    @property
    def event_time(self) -> dict[str, int]:
        """Each model's event time."""
        return {model: t for state in self.states.values()
                for model, t in state.windows.event_time.items()}

    def apply(self, blocks: Sequence[tuple[int, EventBlock]]
              ) -> tuple[list[LateEvents], list[FeatureWindowRow], MonitorResult, set[str]]:
        """:meth:`PartitionState.apply` per model; also the models whose state changed."""
        came_back = self._returns(blocks) if self.silence is not None else {}
        per_model: dict[str, list[tuple[int, EventBlock]]] = {}
        for offset, block in blocks:
            if block.kind == "watermark" and not block.model:
                models = list(self.states)  # those seen before it
            elif block.kind in ("prediction", "watermark"):
                models = [block.model]
            else:
                continue
            for model in models:
                state = self.state(model)
                if offset > max(self.applied_offset, state.windows.applied_offset):
                    per_model.setdefault(model, []).append((offset, block))
        late: list[LateEvents] = []
        rows: list[FeatureWindowRow] = []
        health = MonitorResult()
        for model, part in per_model.items():
            model_late, model_rows, model_health = self.states[model].apply(part)
            late += model_late
            rows += model_rows
            health.extend(model_health)
        changed = set(per_model)
        if self.silence is not None:
            health.alerts += self._judge_silence(came_back, changed)
        return late, rows, health, changed

    def _last_events(self) -> dict[str, tuple[int, str]]:
        return {model: last for state in self.states.values()
                for model, last in state.windows.last_event.items()}

    def _returns(self, blocks: Sequence[tuple[int, EventBlock]]) -> dict[str, tuple[int, int, str]]:
        assert self.silence is not None
        fresh = [(b.model, b.version, min(b.event_time), max(b.event_time))
                 for offset, b in blocks if b.kind == "prediction"
                 and offset > max(self.applied_offset, self._applied(b.model))]
        return self.silence.returns(fresh, self._last_events()) if fresh else {}

    def _applied(self, model: str) -> int:
        state = self.states.get(model)
        return -1 if state is None else state.windows.applied_offset

    def _judge_silence(self, came_back: dict[str, tuple[int, int, str]],
                       changed: set[str]) -> list[Alert]:
        assert self.silence is not None
        last_events = self._last_events()
        if not last_events:
            return []
        partition_time = max(t for t, _ in last_events.values())
        alerts: list[Alert] = []
        for model in sorted(self.states):
            last = last_events.get(model)
            if last is None:
                continue
            found = self.silence.judge(model, self.states[model].silent, last[0], last[1],
                                       partition_time, came_back.get(model))
            if found:
                alerts += found
                changed.add(model)
        return alerts

    def idle_watermark(self, model: str) -> int | None:
        state = self.states.get(model)
        return None if state is None else state.windows.idle_watermark(model)


def _service_config(windows: WindowConfig, monitor: MonitorConfig) -> ServiceConfig:
    return ServiceConfig(window_ms=windows.window_ms, baseline_windows=monitor.baseline_windows)
