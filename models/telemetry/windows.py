"""Event-time tumbling windows of host and GPU telemetry, for the hosts on one partition.

Telemetry is keyed by host, so one host's samples arrive in order on one partition.
Event time and lateness work per host, as they do per model for predictions
(:mod:`driftline.models.windows.feature_windows`):

* a host's event time is the largest sample time seen from it;
* its window ``[start, start + w)`` closes once ``event time - allowed lateness >= start + w``,
  checked after every message, so what closes when depends only on the order of the
  messages, never on how the worker batched them;
* a sample whose window has already closed is *late*: counted in a
  :class:`~driftline.models.windows.feature_windows.LateEvents` row (model = the host, version ""),
  not added.

A host that stops sending (it crashed: the case that matters) would keep its last
window open: the worker's idle timer writes a :class:`HostWatermark` to the telemetry
topic, and the watermark closes it like a sample would, so a replay decides the same.

ECC counters count since the driver loaded, so a window's increase needs the value
before it: the last counted value per GPU is kept across windows (a drop is a driver
reload: the new value is the increase). State is bounded by hosts × open windows
(at most ``lateness / w + 2`` per host); a host silent for ``host_ttl_ms`` of the
partition's event time, with no open window, is forgotten.

>>> from driftline.models.telemetry.sample import HostMetrics, TelemetrySample
>>> host = HostMetrics(cpu_percent=10.0, cpu_percent_per_core=[], load_1m=None,
...                    load_5m=None, load_15m=None, memory_total_bytes=100,
...                    memory_used_bytes=50, memory_available_bytes=50, memory_percent=50.0,
...                    swap_total_bytes=0, swap_used_bytes=0, swap_percent=0.0)
>>> def sample(t):
...     return TelemetrySample(host="h1", event_time=t, interval_seconds=5.0, models=["m"],
...                            gpu_source=None, gpu_error=None, gpus=[], host_metrics=host,
...                            processes=[], dropped=0)
>>> windows = TelemetryWindows(TelemetryConfig(window_ms=1000, allowed_lateness_ms=0))
>>> windows.apply([(0, sample(100)), (1, sample(900))])
([], [])
>>> late, closed = windows.apply([(2, sample(1000)), (3, sample(500))])
>>> [(c.host.window_start, c.host.samples) for c in closed]
[(0, 2)]
>>> [(r.model, r.window_start, r.offset) for r in late]
[('h1', 0, 3)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson

from driftline.models.events.wire import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, BadMessage
from driftline.models.telemetry.aggregates import GpuWindow, GpuWindowRow, HostWindow, HostWindowRow
from driftline.models.telemetry.sample import GpuSample, TelemetrySample, decode_telemetry
from driftline.models.windows.feature_windows import LateEvents

__all__ = ["ClosedWindow", "HostWatermark", "TelemetryConfig", "TelemetryWindows",
           "decode_telemetry_message"]


@dataclasses.dataclass(frozen=True)
class TelemetryConfig:
    window_ms: int = 60_000
    allowed_lateness_ms: int = 10_000
    #: A host whose newest sample is this far (event time) behind the partition's newest,
    #: with no open window, is forgotten; if it comes back it starts afresh.
    host_ttl_ms: int = 24 * 3_600_000


@dataclasses.dataclass(frozen=True)
class HostWatermark:
    """Moves a quiet host's event time to ``event_time``, closing the windows it passes."""

    host: str
    event_time: int

    def to_json(self) -> bytes:
        return orjson.dumps({"type": "watermark", "host": self.host,
                             "event_time": self.event_time})


TelemetryMessage = TelemetrySample | HostWatermark
#: Bounds of the gpu_windows columns gpu_index (UInt16) and xid_codes (UInt32).
_MAX_GPU_INDEX = 2**16
_MAX_XID = 2**32


def decode_telemetry_message(key: bytes | None, value: bytes | None,
                             max_bytes: int = 8 * 1024 * 1024) -> TelemetryMessage:
    """A telemetry sample, or a watermark; :class:`BadMessage` with the reason otherwise."""
    # Only a message that mentions a watermark is parsed here first; the sample decoder
    # checks the size limit of everything else before parsing.
    if value is not None and len(value) <= max_bytes and b'"watermark"' in value:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and doc.get("type") == "watermark":
            return _watermark(key, doc)
    return _checked(decode_telemetry(key, value, max_bytes))


def _checked(sample: TelemetrySample) -> TelemetrySample:
    """What the windows and their ClickHouse columns need beyond the wire format."""
    seen: set[int] = set()
    for i, gpu in enumerate(sample.gpus):
        if gpu.index in seen or gpu.index >= _MAX_GPU_INDEX:
            raise BadMessage(f"telemetry 'gpus[{i}].index' {gpu.index} is repeated or not "
                             f"below {_MAX_GPU_INDEX}: send each GPU once, by its NVML index")
        seen.add(gpu.index)
        if any(code >= _MAX_XID for code in gpu.xid_errors or ()):
            raise BadMessage(f"telemetry 'gpus[{i}].xid_errors' holds a code not below "
                             f"{_MAX_XID}: send NVML's XID codes")
    return sample


def _watermark(key: bytes | None, doc: dict[str, Any]) -> HostWatermark:
    host, event_time = doc.get("host"), doc.get("event_time")
    if not isinstance(host, str) or key != host.encode():
        raise BadMessage("a telemetry watermark needs 'host', equal to the message key")
    if type(event_time) is not int or not MIN_EVENT_TIME_MS <= event_time <= MAX_EVENT_TIME_MS:
        raise BadMessage("telemetry watermark 'event_time' must be UTC epoch milliseconds")
    return HostWatermark(host, event_time)


@dataclasses.dataclass(frozen=True)
class ClosedWindow:
    """One host's closed window: its host row and one row per GPU it reported."""

    host: HostWindowRow
    gpus: tuple[GpuWindowRow, ...]
    #: This host's windows closed so far, this one included (rules' ``min_windows``).
    windows_seen: int


class _Window:
    __slots__ = ("gpus", "host")

    def __init__(self) -> None:
        self.host = HostWindow()
        self.gpus: dict[int, GpuWindow] = {}


class TelemetryWindows:
    """Open telemetry windows, event time per host, and the last offset applied."""

    def __init__(self, config: TelemetryConfig) -> None:
        self.config = config
        self.applied_offset = -1
        self.event_time: dict[str, int] = {}
        #: The newest sample time on the partition: forgotten hosts are measured against it.
        self.clock = -1
        self._windows_seen: dict[str, int] = {}
        self._open: dict[str, dict[int, _Window]] = {}
        #: host -> GPU index -> [sample time, uuid, corrected, uncorrected] last counted.
        self._ecc: dict[str, dict[int, list[Any]]] = {}
        self._swept_at = -1

    @property
    def open_windows(self) -> int:
        return sum(len(windows) for windows in self._open.values())

    def apply(self, messages: Iterable[tuple[int, TelemetryMessage]]
              ) -> tuple[list[LateEvents], list[ClosedWindow]]:
        """Apply (offset, message) pairs in offset order: late samples and closed windows."""
        late: list[LateEvents] = []
        closed: list[ClosedWindow] = []
        for offset, message in messages:
            if isinstance(message, HostWatermark):
                if message.host in self.event_time:
                    self._advance(message.host, message.event_time)
            elif (row := self._add(offset, message)) is not None:
                late.append(row)
            closed += self._close(message.host)
            self._forget_quiet_hosts()
            self.applied_offset = max(self.applied_offset, offset)
        return late, closed

    def idle_watermark(self, host: str) -> int | None:
        """The event time that closes every open window of ``host``, if it has any."""
        starts = self._open.get(host)
        if not starts:
            return None
        return max(starts) + self.config.window_ms + self.config.allowed_lateness_ms

    def _add(self, offset: int, sample: TelemetrySample) -> LateEvents | None:
        w, host, t = self.config.window_ms, sample.host, sample.event_time
        start = t - t % w
        if start + w <= self._closed_through(host):
            return LateEvents(host, "", start, offset, 1)
        self._advance(host, t)
        self.clock = max(self.clock, t)
        window = self._open.setdefault(host, {}).setdefault(start, _Window())
        window.host.add(sample)
        for gpu in sample.gpus:
            window.gpus.setdefault(gpu.index, GpuWindow()).add(
                sample, gpu, self._ecc_increase(host, t, gpu))
        return None

    def _advance(self, host: str, event_time: int) -> None:
        self.event_time[host] = max(self.event_time.get(host, event_time), event_time)

    def _closed_through(self, host: str) -> int:
        return self.event_time.get(host, -1) - self.config.allowed_lateness_ms

    def _close(self, host: str) -> list[ClosedWindow]:
        w, through = self.config.window_ms, self._closed_through(host)
        windows = self._open.get(host, {})
        closed = []
        for start in sorted(s for s in windows if s + w <= through):
            window = windows.pop(start)
            seen = self._windows_seen[host] = self._windows_seen.get(host, 0) + 1
            gpus = tuple(gpu.row(host, index, start, start + w)
                         for index, gpu in sorted(window.gpus.items()))
            closed.append(ClosedWindow(window.host.row(host, start, start + w), gpus, seen))
        if not windows:
            self._open.pop(host, None)
        return closed

    def _ecc_increase(self, host: str, t: int, gpu: GpuSample) -> tuple[int, int]:
        """How far the GPU's (corrected, uncorrected) ECC counters rose since the last
        sample counted; nulls keep the last known value."""
        counters = self._ecc.setdefault(host, {})
        last = counters.get(gpu.index)
        if last is not None and t <= last[0]:
            return 0, 0  # older than the sample counted last: its errors are counted
        now = (gpu.ecc_volatile_corrected, gpu.ecc_volatile_uncorrected)
        if last is None or last[1] != gpu.uuid:  # a GPU seen for the first time: its past
            counters[gpu.index] = [t, gpu.uuid, *now]  # is unknown, not an increase
            return 0, 0
        before = last[2:]
        counters[gpu.index] = [t, gpu.uuid, *(b if n is None else n
                                               for b, n in zip(before, now, strict=True))]
        return _increase(before[0], now[0]), _increase(before[1], now[1])

    def _forget_quiet_hosts(self) -> None:
        # Once per window of partition event time, so the cost stays off the per-message path
        # and the decision depends only on message order.
        if self.clock // self.config.window_ms <= self._swept_at:
            return
        self._swept_at = self.clock // self.config.window_ms
        horizon = self.clock - self.config.host_ttl_ms
        for host in [h for h, t in self.event_time.items() if t < horizon and h not in self._open]:
            del self.event_time[host]
            self._windows_seen.pop(host, None)
            self._ecc.pop(host, None)

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "applied_offset": self.applied_offset, "clock": self.clock,
            "swept_at": self._swept_at, "event_time": self.event_time,
            "windows_seen": self._windows_seen,
            "ecc": [[host, index, *last] for host, gpus in self._ecc.items()
                    for index, last in gpus.items()],
            "windows": [[host, start, window.host.to_state(),
                         [[index, gpu.to_state()] for index, gpu in window.gpus.items()]]
                        for host, windows in self._open.items()
                        for start, window in windows.items()],
        }

    @classmethod
    def from_state(cls, config: TelemetryConfig, state: dict[str, Any]) -> TelemetryWindows:
        self = cls(config)
        self.applied_offset, self.clock = state["applied_offset"], state["clock"]
        self._swept_at = state["swept_at"]
        self.event_time = dict(state["event_time"])
        self._windows_seen = dict(state["windows_seen"])
        for host, index, *last in state["ecc"]:
            self._ecc.setdefault(host, {})[index] = last
        for host, start, host_state, gpus in state["windows"]:
            window = self._open.setdefault(host, {})[start] = _Window()
            window.host = HostWindow.from_state(host_state)
            window.gpus = {index: GpuWindow.from_state(gpu) for index, gpu in gpus}
        return self


def _increase(before: int | None, now: int | None) -> int:
    """How far a counter rose; a counter that fell was reset (driver reload) and rose from 0."""
    if before is None or now is None:
        return 0
    return now - before if now >= before else now
