"""Recorded NVML readings played back through :class:`~driftline.streams.agent.nvml.NvmlBackend`.

For machines without a GPU (the demo, tests): the GPU sampler runs unchanged on readings
from a JSON recording, and recorded errors are raised as the :class:`pynvml.NVMLError`
NVML would raise, so "not supported" fields come out as null exactly as on real GPUs.

A recording (see ``recordings/h100x2.json``)::

    {"description": "...",
     "devices": [{"uuid": "GPU-...", "name": "NVIDIA H100 80GB HBM3",
                  "enforced_power_limit": 700000, "register_xid_events": true}, ...],
     "samples": [{"gpus": [{"utilization_rates": [87, 61], "memory_info": [used, total],
                            "temperature": 64, "power_usage": 612000, "clock_sm": 1980,
                            "clock_mem": 2619, "clocks_event_reasons": 4,
                            "ecc_corrected": 0, "ecc_uncorrected": 0, "pcie_tx": 1234,
                            "pcie_rx": 5678, "compute_running_processes": [[4242, 123]]},
                           ...],
                  "xid_events": [[0, 63]]}, ...]}

A reading is looked up in the current sample's GPU entry, then in its device entry; units
are NVML's (bytes, %, C, mW, MHz, KB/s). ``{"nvml_error": "NOT_SUPPORTED"}`` in place of a
reading raises ``NVMLError(NVML_ERROR_NOT_SUPPORTED)`` (any NVML_ERROR_* name works). Each
:meth:`ReplayBackend.begin_sample` moves to the next sample, back to the first after the last.

>>> backend = ReplayBackend.shipped("h100x2")
>>> backend.init(); backend.begin_sample()
>>> backend.device_count(), backend.name(0)
(2, 'NVIDIA H100 80GB HBM3')
>>> backend.utilization_rates(1)
Traceback (most recent call last):
...
pynvml.NVMLError_NotSupported: Not Supported
"""

from __future__ import annotations

import importlib.resources
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import orjson

from driftline.streams.agent.nvml import Handle, nvml_error, pynvml

__all__ = ["ReplayBackend", "recording_names"]

_RECORDINGS = "recordings"


def recording_names() -> list[str]:
    """The recordings shipped with driftline, e.g. ``["h100x2"]``."""
    folder = importlib.resources.files(__package__) / _RECORDINGS
    return sorted(entry.name.removesuffix(".json") for entry in folder.iterdir()
                  if entry.name.endswith(".json"))


class ReplayBackend:
    """An :class:`NvmlBackend` that plays a recording back, sample after sample, in a loop.

    Parameters
    ----------
    recording
        The parsed recording (see the module docstring).
    name
        Reported as ``gpu_source = "replay:<name>"`` in each telemetry sample.
    """

    def __init__(self, recording: Mapping[str, Any], name: str) -> None:
        self.recording = recording
        self.source = f"replay:{name}"
        self._devices: list[Mapping[str, Any]] = _checked_devices(recording, name)
        self._samples: list[Mapping[str, Any]] = recording["samples"]
        self._position = -1
        self._registered: set[int] = set()
        self._pending: deque[tuple[int, int]] = deque()

    @classmethod
    def shipped(cls, name: str = "h100x2") -> Self:
        """One of the recordings shipped with driftline (:func:`recording_names`)."""
        if name not in recording_names():
            raise ValueError(f"no shipped GPU recording {name!r}: choose one of "
                             f"{', '.join(recording_names())} or give a recording file's path")
        path = importlib.resources.files(__package__) / _RECORDINGS / f"{name}.json"
        return cls(orjson.loads(path.read_bytes()), name)

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """A recording from a JSON file."""
        try:
            recording = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"cannot read GPU recording {str(path)!r}: {exc}") from None
        return cls(recording, Path(path).stem)

    @classmethod
    def load(cls, name_or_path: str) -> Self:
        """A shipped recording by name, or else a recording file by path."""
        if name_or_path in recording_names():
            return cls.shipped(name_or_path)
        if Path(name_or_path).is_file():
            return cls.from_file(name_or_path)
        raise ValueError(f"no GPU recording {name_or_path!r}: give a recording file's path "
                         f"or one of {', '.join(recording_names())}")

    @property
    def position(self) -> int:
        """Index of the sample being played (-1 before the first :meth:`begin_sample`)."""
        return self._position

    def __len__(self) -> int:
        return len(self._samples)

    # --- NvmlBackend ---------------------------------------------------------------------

    def init(self) -> None:
        self._registered.clear()
        self._pending.clear()

    def shutdown(self) -> None:
        self._registered.clear()

    def begin_sample(self) -> None:
        self._position = (self._position + 1) % len(self._samples)
        for index, xid in self._samples[self._position].get("xid_events", ()):
            if index in self._registered:
                self._pending.append((index, xid))

    def device_count(self) -> int:
        return len(self._devices)

    def handle_by_index(self, index: int) -> Handle:
        if not 0 <= index < len(self._devices):
            raise nvml_error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def uuid(self, handle: Handle) -> str:
        return str(self._reading(handle, "uuid"))

    def name(self, handle: Handle) -> str:
        return str(self._reading(handle, "name"))

    def utilization_rates(self, handle: Handle) -> tuple[int, int]:
        gpu, memory = self._reading(handle, "utilization_rates")
        return int(gpu), int(memory)

    def memory_info(self, handle: Handle) -> tuple[int, int]:
        used, total = self._reading(handle, "memory_info")
        return int(used), int(total)

    def temperature(self, handle: Handle) -> int:
        return int(self._reading(handle, "temperature"))

    def power_usage(self, handle: Handle) -> int:
        return int(self._reading(handle, "power_usage"))

    def enforced_power_limit(self, handle: Handle) -> int:
        return int(self._reading(handle, "enforced_power_limit"))

    def clock_info(self, handle: Handle, clock: int) -> int:
        key = {pynvml.NVML_CLOCK_SM: "clock_sm", pynvml.NVML_CLOCK_MEM: "clock_mem"}.get(clock)
        if key is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(self._reading(handle, key))

    def clocks_event_reasons(self, handle: Handle) -> int:
        return int(self._reading(handle, "clocks_event_reasons"))

    def total_ecc_errors(self, handle: Handle, error_type: int) -> int:
        corrected = error_type == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
        return int(self._reading(handle, "ecc_corrected" if corrected else "ecc_uncorrected"))

    def pcie_throughput(self, handle: Handle, counter: int) -> int:
        tx = counter == pynvml.NVML_PCIE_UTIL_TX_BYTES
        return int(self._reading(handle, "pcie_tx" if tx else "pcie_rx"))

    def compute_running_processes(self, handle: Handle) -> list[tuple[int, int | None]]:
        return [(int(pid), None if used is None else int(used))
                for pid, used in self._reading(handle, "compute_running_processes")]

    def register_xid_events(self, handle: Handle) -> None:
        self._reading(handle, "register_xid_events")
        self._registered.add(handle)

    def next_xid_event(self) -> tuple[int, int] | None:
        return self._pending.popleft() if self._pending else None

    # ---------------------------------------------------------------------------------------

    def _reading(self, handle: Handle, key: str) -> Any:
        sample = self._samples[max(self._position, 0)]["gpus"][handle]
        value = sample[key] if key in sample else self._devices[handle].get(key)
        if value is None:  # not recorded: what NVML says of a reading it does not have
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if isinstance(value, Mapping) and "nvml_error" in value:
            code = getattr(pynvml, f"NVML_ERROR_{value['nvml_error']}", pynvml.NVML_ERROR_UNKNOWN)
            raise nvml_error(code)
        return value


def _checked_devices(recording: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """The recording's devices, after checking the shape the backend relies on."""
    devices, samples = recording.get("devices"), recording.get("samples")
    if not isinstance(devices, list) or not isinstance(samples, list) or not samples:
        raise ValueError(f"GPU recording {name!r} needs a 'devices' list and a non-empty "
                         "'samples' list")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict) or len(sample.get("gpus") or ()) != len(devices):
            raise ValueError(f"GPU recording {name!r}: sample {i} needs 'gpus' with one "
                             f"entry per device ({len(devices)})")
    return devices
