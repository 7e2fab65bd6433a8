"""NVML access as a small protocol, and its real implementation over pynvml.

The GPU sampler (:mod:`driftline.streams.agent.gpu`) only calls :class:`NvmlBackend`
methods, one per pynvml call it needs, with pynvml's units and pynvml's errors
(:class:`pynvml.NVMLError`). :class:`PynvmlBackend` calls the NVIDIA driver;
:class:`~driftline.streams.agent.replay.ReplayBackend` plays recorded readings back
through the same protocol, so recorded and live readings take one code path.

Backend calls block (NVML can take a second on a busy or failing GPU): callers run them
off the event loop.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

# The PyPI package "pynvml" (a shim over nvidia-ml-py, which provides the same module)
# warns on first import that it is deprecated; the module is the same, so the warning
# says nothing about our use of it and must not break `filterwarnings = error` runs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import pynvml

__all__ = ["NvmlBackend", "PynvmlBackend", "nvml_error", "pynvml"]

#: NVML's "this value is not available" sentinels (unsigned -1, 32 and 64 bit).
NOT_AVAILABLE = frozenset({0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF})

Handle = Any  # an opaque NVML device handle


class NvmlBackend(Protocol):
    """The NVML calls the GPU sampler makes; each may raise :class:`pynvml.NVMLError`.

    Units are NVML's: bytes, percent, degrees C, milliwatts, MHz, KB/s.
    """

    #: Goes into each sample's ``gpu_source``: "nvml", "replay:<recording>".
    source: str

    def init(self) -> None:
        """nvmlInit."""

    def shutdown(self) -> None:
        """nvmlShutdown (and free anything the backend holds)."""

    def begin_sample(self) -> None:
        """Called at the start of each sampling pass: the replay backend moves on to its
        next recorded reading; the real one has nothing to do."""

    def device_count(self) -> int:
        """nvmlDeviceGetCount."""

    def handle_by_index(self, index: int) -> Handle:
        """nvmlDeviceGetHandleByIndex."""

    def uuid(self, handle: Handle) -> str:
        """nvmlDeviceGetUUID."""

    def name(self, handle: Handle) -> str:
        """nvmlDeviceGetName."""

    def utilization_rates(self, handle: Handle) -> tuple[int, int]:
        """nvmlDeviceGetUtilizationRates: (gpu %, memory %)."""

    def memory_info(self, handle: Handle) -> tuple[int, int]:
        """nvmlDeviceGetMemoryInfo: (used bytes, total bytes)."""

    def temperature(self, handle: Handle) -> int:
        """nvmlDeviceGetTemperature of the GPU sensor, degrees C."""

    def power_usage(self, handle: Handle) -> int:
        """nvmlDeviceGetPowerUsage, milliwatts."""

    def enforced_power_limit(self, handle: Handle) -> int:
        """nvmlDeviceGetEnforcedPowerLimit, milliwatts."""

    def clock_info(self, handle: Handle, clock: int) -> int:
        """nvmlDeviceGetClockInfo (NVML_CLOCK_SM, NVML_CLOCK_MEM), MHz."""

    def clocks_event_reasons(self, handle: Handle) -> int:
        """nvmlDeviceGetCurrentClocksEventReasons: the throttle reason bitmask."""

    def total_ecc_errors(self, handle: Handle, error_type: int) -> int:
        """nvmlDeviceGetTotalEccErrors(NVML_MEMORY_ERROR_TYPE_*, NVML_VOLATILE_ECC)."""

    def pcie_throughput(self, handle: Handle, counter: int) -> int:
        """nvmlDeviceGetPcieThroughput (NVML_PCIE_UTIL_TX_BYTES / RX_BYTES), KB/s."""

    def compute_running_processes(self, handle: Handle) -> list[tuple[int, int | None]]:
        """nvmlDeviceGetComputeRunningProcesses: (pid, used bytes or None)."""

    def register_xid_events(self, handle: Handle) -> None:
        """nvmlDeviceRegisterEvents(nvmlEventTypeXidCriticalError) on the backend's event set."""

    def next_xid_event(self) -> tuple[int, int] | None:
        """nvmlEventSetWait with no wait: (device index, XID code), or None when none is
        pending."""


def nvml_error(code: int) -> pynvml.NVMLError:
    """The pynvml exception for an NVML_ERROR_* code (its subclass, as pynvml raises)."""
    return pynvml.NVMLError(code)


class PynvmlBackend:
    """:class:`NvmlBackend` over the NVIDIA driver's NVML library, via pynvml."""

    source = "nvml"

    def __init__(self) -> None:
        self._events: Any = None

    def init(self) -> None:
        pynvml.nvmlInit()

    def shutdown(self) -> None:
        events, self._events = self._events, None
        try:
            if events is not None:
                pynvml.nvmlEventSetFree(events)
        finally:
            pynvml.nvmlShutdown()

    def begin_sample(self) -> None:
        pass

    def device_count(self) -> int:
        return int(pynvml.nvmlDeviceGetCount())

    def handle_by_index(self, index: int) -> Handle:
        return pynvml.nvmlDeviceGetHandleByIndex(index)

    def uuid(self, handle: Handle) -> str:
        return str(pynvml.nvmlDeviceGetUUID(handle))

    def name(self, handle: Handle) -> str:
        return str(pynvml.nvmlDeviceGetName(handle))

    def utilization_rates(self, handle: Handle) -> tuple[int, int]:
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        return int(rates.gpu), int(rates.memory)

    def memory_info(self, handle: Handle) -> tuple[int, int]:
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return int(memory.used), int(memory.total)

    def temperature(self, handle: Handle) -> int:
        return int(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))

    def power_usage(self, handle: Handle) -> int:
        return int(pynvml.nvmlDeviceGetPowerUsage(handle))

    def enforced_power_limit(self, handle: Handle) -> int:
        return int(pynvml.nvmlDeviceGetEnforcedPowerLimit(handle))

    def clock_info(self, handle: Handle, clock: int) -> int:
        return int(pynvml.nvmlDeviceGetClockInfo(handle, clock))

    def clocks_event_reasons(self, handle: Handle) -> int:
        try:
            return int(pynvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
        except (AttributeError, pynvml.NVMLError_FunctionNotFound):
            # Drivers (and bindings) before 535 only have the older name of the same call.
            return int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))

    def total_ecc_errors(self, handle: Handle, error_type: int) -> int:
        return int(pynvml.nvmlDeviceGetTotalEccErrors(handle, error_type,
                                                      pynvml.NVML_VOLATILE_ECC))

    def pcie_throughput(self, handle: Handle, counter: int) -> int:
        return int(pynvml.nvmlDeviceGetPcieThroughput(handle, counter))

    def compute_running_processes(self, handle: Handle) -> list[tuple[int, int | None]]:
        # pynvml already turns the "not available" memory sentinel into None.
        return [(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory))
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]

    def register_xid_events(self, handle: Handle) -> None:
        if self._events is None:
            self._events = pynvml.nvmlEventSetCreate()
        pynvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError,
                                        self._events)

    def next_xid_event(self) -> tuple[int, int] | None:
        if self._events is None:
            return None
        try:
            data = pynvml.nvmlEventSetWait(self._events, 0)
        except pynvml.NVMLError_Timeout:
            return None
        return int(pynvml.nvmlDeviceGetIndex(data.device)), int(data.eventData)
