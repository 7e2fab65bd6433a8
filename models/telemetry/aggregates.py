"""What one event-time window of telemetry adds up to: per GPU and per host.

:class:`GpuWindow` and :class:`HostWindow` take one host's samples (any order) and give
the rows of ClickHouse ``gpu_windows`` and ``host_windows``: per reading the sample
count, nulls, mean, max and p95 (:class:`~driftline.models.telemetry.series.MetricSeries`); per GPU
also throttling, XID errors and the increase of its ECC counters, and the models it
serves. State is a few counters and at most a window's readings, checkpointed with
``to_state``/``from_state``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any

from driftline.models.telemetry.sample import GpuSample, HostMetrics, TelemetrySample
from driftline.models.telemetry.series import MetricSeries, MetricSummary

__all__ = ["GPU_METRICS", "HOST_METRICS", "GpuWindow", "GpuWindowRow", "HostWindow",
           "HostWindowRow", "gpu_models"]


def _percent(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole * 100.0


#: GPU readings aggregated per window; derived ones are null where an input is.
GPU_METRICS: Mapping[str, Callable[[GpuSample], float | None]] = {
    "utilization_gpu_percent": lambda g: g.utilization_gpu_percent,
    "utilization_memory_percent": lambda g: g.utilization_memory_percent,
    "memory_used_percent": lambda g: _percent(g.memory_used_bytes, g.memory_total_bytes),
    "memory_used_bytes": lambda g: g.memory_used_bytes,
    "temperature_c": lambda g: g.temperature_c,
    "power_draw_w": lambda g: g.power_draw_w,
    "power_percent": lambda g: _percent(g.power_draw_w, g.power_limit_w),
    "sm_clock_mhz": lambda g: g.sm_clock_mhz,
    "memory_clock_mhz": lambda g: g.memory_clock_mhz,
    "pcie_tx_kb_per_s": lambda g: g.pcie_tx_kb_per_s,
    "pcie_rx_kb_per_s": lambda g: g.pcie_rx_kb_per_s,
}
HOST_METRICS: Mapping[str, Callable[[HostMetrics], float | None]] = {
    name: operator.attrgetter(name)
    for name in ("cpu_percent", "load_1m", "memory_percent", "swap_percent",
                 "disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_sent_bytes_per_s",
                 "net_recv_bytes_per_s")
}
#: Clocks-event (throttle) reasons that mean the GPU is held back by power or heat; the
#: others (idle, application clocks, sync boost, display) are not trouble.
POWER_THERMAL_REASONS = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown",
                                   "hw_thermal_slowdown", "hw_power_brake_slowdown"})
_IDLE = "gpu_idle"
_U64_MAX = 2**64 - 1


def gpu_models(sample: TelemetrySample, gpu: GpuSample) -> list[str]:
    """The models ``gpu`` serves in ``sample``: those whose serving processes hold memory on
    it, where the agent can tell (it reports serving processes with their models, and the
    GPU's processes); otherwise every model of the host."""
    by_pid = {p.pid: p.model for p in sample.processes if p.model}
    if not by_pid or gpu.processes is None:
        return list(sample.models)
    return sorted({by_pid[p.pid] for p in gpu.processes if p.pid in by_pid})


@dataclasses.dataclass(frozen=True)
class HostWindowRow:
    """One host over one window: what lands in ClickHouse ``host_windows``."""

    host: str
    window_start: int
    window_end: int
    models: tuple[str, ...]
    samples: int
    metrics: Mapping[str, MetricSummary]


@dataclasses.dataclass(frozen=True)
class GpuWindowRow:
    """One GPU over one window: what lands in ClickHouse ``gpu_windows``."""

    host: str
    gpu_index: int
    gpu_uuid: str
    gpu_name: str
    window_start: int
    window_end: int
    models: tuple[str, ...]
    samples: int
    metrics: Mapping[str, MetricSummary]
    #: Samples with any clocks-event reason but gpu_idle, and with a power/thermal one.
    throttled_samples: int
    power_thermal_samples: int
    throttle_reasons: tuple[str, ...]
    xid_errors: int
    xid_codes: tuple[int, ...]
    ecc_corrected: int
    ecc_uncorrected: int
    #: Samples in which a reading was null, by reading (metrics and the fields above).
    null_counts: Mapping[str, int]

    @property
    def feature(self) -> str:
        """How alert rules name this GPU: ``gpu<index>``."""
        return f"gpu{self.gpu_index}"

    def reported(self, reading: str) -> int:
        """Samples in which ``reading`` (a key of ``null_counts``) was not null."""
        return self.samples - self.null_counts.get(reading, 0)


class HostWindow:
    """Host metrics of one host and window."""

    def __init__(self) -> None:
        self.samples = 0
        self.models: set[str] = set()
        self.series = {name: MetricSeries() for name in HOST_METRICS}

    def add(self, sample: TelemetrySample) -> None:
        self.samples += 1
        self.models.update(sample.models)
        for name, read in HOST_METRICS.items():
            self.series[name].add(read(sample.host_metrics))

    def row(self, host: str, start: int, end: int) -> HostWindowRow:
        return HostWindowRow(host, start, end, tuple(sorted(self.models)), self.samples,
                             {name: s.summary() for name, s in self.series.items()})

    def to_state(self) -> dict[str, Any]:
        return {"samples": self.samples, "models": sorted(self.models),
                "series": {name: s.to_state() for name, s in self.series.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> HostWindow:
        window = cls()
        window.samples, window.models = state["samples"], set(state["models"])
        window.series.update({n: MetricSeries.from_state(s) for n, s in state["series"].items()})
        return window


@dataclasses.dataclass
class GpuWindow:
    """One GPU of one host and window. ``ecc_*`` increases are worked out by the caller,
    which knows the counters' values before the window."""

    samples: int = 0
    uuid: str = ""
    name: str = ""
    models: set[str] = dataclasses.field(default_factory=set)
    series: dict[str, MetricSeries] = dataclasses.field(
        default_factory=lambda: {name: MetricSeries() for name in GPU_METRICS})
    throttled: int = 0
    power_thermal: int = 0
    reasons: set[str] = dataclasses.field(default_factory=set)
    xid_errors: int = 0
    xid_codes: set[int] = dataclasses.field(default_factory=set)
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    #: Nulls of the readings that are not series.
    nulls: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, sample: TelemetrySample, gpu: GpuSample, ecc_increase: tuple[int, int]) -> None:
        self.samples += 1
        self.uuid, self.name = gpu.uuid or self.uuid, gpu.name or self.name
        self.models.update(gpu_models(sample, gpu))
        for name, read in GPU_METRICS.items():
            self.series[name].add(read(gpu))
        if gpu.throttle_reason_names is None:
            self._null("throttle_reasons")
        else:
            names = set(gpu.throttle_reason_names)
            self.reasons |= names
            self.throttled += bool(names - {_IDLE})
            self.power_thermal += bool(names & POWER_THERMAL_REASONS)
        if gpu.xid_errors is None:
            self._null("xid_errors")
        else:
            self.xid_errors += len(gpu.xid_errors)
            self.xid_codes.update(gpu.xid_errors)
        for reading in ("ecc_volatile_corrected", "ecc_volatile_uncorrected"):
            if getattr(gpu, reading) is None:
                self._null(reading)
        self.ecc_corrected += ecc_increase[0]
        self.ecc_uncorrected += ecc_increase[1]

    def _null(self, reading: str) -> None:
        self.nulls[reading] = self.nulls.get(reading, 0) + 1

    def row(self, host: str, index: int, start: int, end: int) -> GpuWindowRow:
        metrics = {name: s.summary() for name, s in self.series.items()}
        nulls = {name: m.nulls for name, m in metrics.items()}
        for reading in ("throttle_reasons", "xid_errors", "ecc_volatile_corrected",
                        "ecc_volatile_uncorrected"):
            nulls[reading] = self.nulls.get(reading, 0)
        return GpuWindowRow(
            host, index, self.uuid, self.name, start, end, tuple(sorted(self.models)),
            self.samples, metrics, self.throttled, self.power_thermal,
            tuple(sorted(self.reasons)), self.xid_errors, tuple(sorted(self.xid_codes)),
            # Saturated: only counters that "reset" from near 2**64 could pass it, and a
            # row ClickHouse refuses would stop the worker.
            min(self.ecc_corrected, _U64_MAX), min(self.ecc_uncorrected, _U64_MAX), nulls)

    def to_state(self) -> dict[str, Any]:
        state = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        state.update(models=sorted(self.models), reasons=sorted(self.reasons),
                     xid_codes=sorted(self.xid_codes),
                     series={name: s.to_state() for name, s in self.series.items()})
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> GpuWindow:
        window = cls(**{**state, "models": set(state["models"]),
                        "reasons": set(state["reasons"]), "xid_codes": set(state["xid_codes"]),
                        "series": {}})
        window.series = {name: MetricSeries() for name in GPU_METRICS}
        window.series.update({n: MetricSeries.from_state(s) for n, s in state["series"].items()})
        return window
