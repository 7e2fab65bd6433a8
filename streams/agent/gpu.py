"""Per-GPU readings through an :class:`~driftline.streams.agent.nvml.NvmlBackend`.

One code path for live and recorded readings: every reading is one backend call, and a
call that raises :class:`pynvml.NVMLError` or returns an NVML "not available" sentinel
gives null. "Not supported" and "no permission" are a property of the GPU or driver, logged
once; any other NVML error (a lost GPU, say) also lands in the GPU's ``error`` field.

>>> from driftline.streams.agent.replay import ReplayBackend
>>> sampler = GpuSampler(ReplayBackend.shipped("h100x2"))
>>> sampler.start()
2
>>> gpu0, gpu1 = sampler.sample()
>>> gpu0.throttle_reason_names, gpu0.power_draw_w, gpu1.utilization_gpu_percent
(['gpu_idle'], 72.713, None)
>>> sampler.close()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from driftline.models.telemetry.sample import GpuProcess, GpuSample
from driftline.streams.agent.nvml import NOT_AVAILABLE, Handle, NvmlBackend, pynvml

__all__ = ["GpuSampler", "throttle_reason_names"]

log = logging.getLogger("driftline.streams.agent")

_T = TypeVar("_T")

#: NVML's clocks-event (throttle) reason bits, nvmlClocksEventReason*.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
_KNOWN_REASONS = sum(bit for bit, _ in THROTTLE_REASONS)

#: What the GPU or driver cannot give (rather than a failure): null, logged once.
_UNAVAILABLE = frozenset({pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_NO_PERMISSION,
                          pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, pynvml.NVML_ERROR_NO_DATA})
#: XID events drained per sample at most; a GPU storming events must not stall sampling.
_MAX_XID_EVENTS = 1000


def throttle_reason_names(mask: int) -> list[str]:
    """The set bits of a clocks-event (throttle) bitmask by name.

    >>> throttle_reason_names(0x24)
    ['sw_power_cap', 'sw_thermal_slowdown']
    >>> throttle_reason_names(0x1000)
    ['unknown_0x1000']
    """
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_REASONS
    return names + [f"unknown_{1 << b:#x}" for b in range(unknown.bit_length())
                    if unknown >> b & 1]


class GpuSampler:
    """Reads every GPU the backend sees; use it from one thread (NVML calls block).

    :meth:`start` raises :class:`pynvml.NVMLError` when NVML itself is unusable (no
    driver, no library); after that, failures only turn readings into null.
    """

    def __init__(self, backend: NvmlBackend) -> None:
        self.backend = backend
        self._handles: list[Handle] = []
        #: Per GPU: XID codes since the last sample, or None where events are unavailable.
        self._xids: list[list[int] | None] = []
        self._logged: set[tuple[int, str, int]] = set()
        self._error: str | None = None

    def start(self) -> int:
        """Initialise NVML, find the GPUs and register for XID events; returns the count."""
        self.backend.init()
        self._handles = [self.backend.handle_by_index(i)
                         for i in range(self.backend.device_count())]
        self._xids = [self._register_xids(i, handle) for i, handle in enumerate(self._handles)]
        return len(self._handles)

    def close(self) -> None:
        try:
            self.backend.shutdown()
        except pynvml.NVMLError as exc:
            log.debug("NVML shutdown failed: %s", exc)

    def sample(self) -> list[GpuSample]:
        """One reading of every GPU."""
        self.backend.begin_sample()
        self._drain_xids()
        return [self._sample_gpu(i, handle) for i, handle in enumerate(self._handles)]

    def _sample_gpu(self, i: int, handle: Handle) -> GpuSample:
        b, self._error = self.backend, None
        utilization = self._read(i, "utilization", b.utilization_rates, handle) or (None, None)
        memory = self._read(i, "memory", b.memory_info, handle) or (None, None)
        reasons = _known(self._read(i, "throttle_reasons", b.clocks_event_reasons, handle))
        processes = self._read(i, "processes", b.compute_running_processes, handle)
        xids, self._xids[i] = self._xids[i], None if self._xids[i] is None else []
        return GpuSample(
            index=i,
            uuid=self._read(i, "uuid", b.uuid, handle),
            name=self._read(i, "name", b.name, handle),
            utilization_gpu_percent=_known(utilization[0]),
            utilization_memory_percent=_known(utilization[1]),
            memory_used_bytes=_known(memory[0]),
            memory_total_bytes=_known(memory[1]),
            temperature_c=_known(self._read(i, "temperature", b.temperature, handle)),
            power_draw_w=_watts(self._read(i, "power_draw", b.power_usage, handle)),
            power_limit_w=_watts(self._read(i, "power_limit", b.enforced_power_limit, handle)),
            sm_clock_mhz=_known(self._read(i, "sm_clock", b.clock_info, handle,
                                           pynvml.NVML_CLOCK_SM)),
            memory_clock_mhz=_known(self._read(i, "memory_clock", b.clock_info, handle,
                                               pynvml.NVML_CLOCK_MEM)),
            throttle_reasons=reasons,
            throttle_reason_names=None if reasons is None else throttle_reason_names(reasons),
            ecc_volatile_corrected=_known(self._read(
                i, "ecc", b.total_ecc_errors, handle, pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED)),
            ecc_volatile_uncorrected=_known(self._read(
                i, "ecc", b.total_ecc_errors, handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)),
            xid_errors=xids,
            pcie_tx_kb_per_s=_known(self._read(i, "pcie", b.pcie_throughput, handle,
                                               pynvml.NVML_PCIE_UTIL_TX_BYTES)),
            pcie_rx_kb_per_s=_known(self._read(i, "pcie", b.pcie_throughput, handle,
                                               pynvml.NVML_PCIE_UTIL_RX_BYTES)),
            processes=None if processes is None else [
                GpuProcess(pid=pid, used_memory_bytes=_known(used)) for pid, used in processes],
            error=self._error,
        )

    def _read(self, i: int, field: str, call: Callable[..., _T], *args: Any) -> _T | None:
        try:
            return call(*args)
        except pynvml.NVMLError as exc:
            self._note(i, field, exc)
            return None

    def _note(self, i: int, field: str, exc: pynvml.NVMLError) -> None:
        code = int(exc.value)
        if code not in _UNAVAILABLE and self._error is None:
            self._error = f"{field}: {exc}"
        if (i, field, code) not in self._logged:  # once: it will say the same every sample
            self._logged.add((i, field, code))
            level = logging.INFO if code in _UNAVAILABLE else logging.WARNING
            log.log(level, "GPU %d: NVML gives no %s (%s); reported as null", i, field, exc)

    def _register_xids(self, i: int, handle: Handle) -> list[int] | None:
        try:
            self.backend.register_xid_events(handle)
        except pynvml.NVMLError as exc:
            log.info("GPU %d: no XID events from NVML (%s); xid_errors reported as null", i, exc)
            return None
        return []

    def _drain_xids(self) -> None:
        for _ in range(_MAX_XID_EVENTS):
            try:
                event = self.backend.next_xid_event()
            except pynvml.NVMLError as exc:
                log.warning("reading NVML XID events failed: %s", exc)
                return
            if event is None:
                return
            index, xid = event
            pending = self._xids[index] if 0 <= index < len(self._xids) else None
            if pending is not None:
                pending.append(xid)
            log.warning("GPU %d reported XID %d", index, xid)


def _known(value: int | None) -> int | None:
    """None for NVML's "not available" sentinels (0xFFFFFFFF and its 64-bit twin)."""
    return None if value is None or value in NOT_AVAILABLE else int(value)


def _watts(milliwatts: int | None) -> float | None:
    known = _known(milliwatts)
    return None if known is None else known / 1000
