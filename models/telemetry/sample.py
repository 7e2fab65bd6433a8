"""The telemetry sample a host agent (``driftline agent``) publishes, and its decoder.

One JSON message per host and sampling interval on the telemetry topic, keyed by host
name, so one host's samples stay in order on one partition. Readings a GPU or an OS cannot
give (NVML "not supported", no permission, sentinel values, the first rate of a run) are
``null``, never a made-up number. Every number is non-negative. The JSON Schema is
``models/schemas/telemetry.json``; this decoder is the source of truth.

>>> sample = TelemetrySample(host="gpu-07", event_time=1764230400000, interval_seconds=5.0,
...                          models=["fraud"], gpu_source=None, gpu_error=None, gpus=[],
...                          host_metrics=HostMetrics(cpu_percent=12.5,
...                              cpu_percent_per_core=[10.0, 15.0], load_1m=0.5, load_5m=0.4,
...                              load_15m=0.3, memory_total_bytes=2048, memory_used_bytes=1024,
...                              memory_available_bytes=1024, memory_percent=50.0,
...                              swap_total_bytes=0, swap_used_bytes=0, swap_percent=0.0),
...                          processes=[], dropped=0)
>>> decode_telemetry(b"gpu-07", sample.to_json()) == sample
True
>>> decode_telemetry(b"gpu-07", b'{"type":"telemetry","host":"gpu-07","event_time":-1}')
Traceback (most recent call last):
...
driftline.models.events.wire.BadMessage: telemetry 'event_time' -1 is out of range: send UTC epoch milliseconds
"""  # noqa: E501 (a doctest's exception line is one line)

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import orjson

from driftline.models.events.wire import (
    MAX_EVENT_TIME_MS,
    MAX_NAME_LENGTH,
    MIN_EVENT_TIME_MS,
    BadMessage,
    load_json,
)

__all__ = ["BadMessage", "GpuProcess", "GpuSample", "HostMetrics", "ProcessSample",
           "TelemetrySample", "decode_telemetry"]

_Record = TypeVar("_Record")
#: Fields holding names that consumers group by: bounded like model names on the wire.
_NAME_FIELDS = frozenset({"host", "models"})
_HINTS: dict[Any, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class GpuProcess:
    """A process holding memory on one GPU (NVML's compute processes)."""

    pid: int
    #: null where NVML cannot attribute memory (MIG without privileges, Windows WDDM).
    used_memory_bytes: int | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class GpuSample:
    """One GPU's readings; each is null where NVML cannot give it on this GPU or driver."""

    index: int
    uuid: str | None
    name: str | None
    utilization_gpu_percent: int | None
    utilization_memory_percent: int | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    temperature_c: int | None
    power_draw_w: float | None
    power_limit_w: float | None
    sm_clock_mhz: int | None
    memory_clock_mhz: int | None
    #: NVML's clocks-event (throttle) bitmask, and its set bits by name.
    throttle_reasons: int | None
    throttle_reason_names: list[str] | None
    ecc_volatile_corrected: int | None
    ecc_volatile_uncorrected: int | None
    #: XID codes NVML reported since the previous sample; null where XID events cannot be
    #: registered (unsupported GPU or driver, or no permission).
    xid_errors: list[int] | None
    pcie_tx_kb_per_s: int | None
    pcie_rx_kb_per_s: int | None
    processes: list[GpuProcess] | None
    #: The first unexpected NVML error of this sample ("GPU is lost", ...), or null.
    error: str | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class HostMetrics:
    """CPU, memory and I/O of the host; rates are per second since the previous sample."""

    cpu_percent: float
    cpu_percent_per_core: list[float]
    #: null where the OS has no load average.
    load_1m: float | None
    load_5m: float | None
    load_15m: float | None
    memory_total_bytes: int
    memory_used_bytes: int
    memory_available_bytes: int
    memory_percent: float
    swap_total_bytes: int
    swap_used_bytes: int
    swap_percent: float
    #: null without disk or network counters (some containers), or when a counter reset.
    disk_read_bytes_per_s: float | None = None
    disk_write_bytes_per_s: float | None = None
    net_sent_bytes_per_s: float | None = None
    net_recv_bytes_per_s: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ProcessSample:
    """A serving process, chosen by PID or by name pattern."""

    pid: int
    name: str | None
    #: The model it serves, if it says so (DRIFTLINE_MODEL in its environment, or its
    #: command line).
    model: str | None
    #: Percent of one core since the previous sample (above 100 with several cores busy);
    #: null at a process's first sample, which has nothing to measure against.
    cpu_percent: float | None
    rss_bytes: int | None
    #: Its memory on all GPUs together, from NVML; null without GPU readings for it.
    gpu_memory_bytes: int | None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TelemetrySample:
    """One host's telemetry at ``event_time`` (UTC epoch ms), as sent on the telemetry topic."""

    type: Literal["telemetry"] = "telemetry"
    host: str
    event_time: int
    interval_seconds: float
    #: The models this host serves (configured, or discovered from its serving processes).
    models: list[str]
    #: "nvml" for real GPUs, "replay:<recording>" for recorded readings, null for none.
    gpu_source: str | None
    #: Why ``gpus`` is empty or stale (NVML missing, NVML not answering), or null.
    gpu_error: str | None
    gpus: list[GpuSample]
    host_metrics: HostMetrics
    processes: list[ProcessSample]
    #: Samples this agent dropped since it started (buffer full while Kafka was away).
    dropped: int

    def to_json(self) -> bytes:
        """The message value: compact UTF-8 JSON."""
        return orjson.dumps(self)

    @property
    def key(self) -> bytes:
        """The message key: the host name."""
        return self.host.encode()


def decode_telemetry(key: bytes | None, value: bytes | None,
                     max_bytes: int = 8 * 1024 * 1024) -> TelemetrySample:
    """Decode one telemetry message, or raise :class:`BadMessage` with a one-line reason."""
    doc = load_json(value, max_bytes)
    if not isinstance(doc, dict) or doc.get("type") != "telemetry":
        shown = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise BadMessage(f"expected a telemetry object ('type': 'telemetry'), got {shown!r:.80}")
    sample = _record(TelemetrySample, doc, "")
    # Compared as bytes: a key that is not UTF-8 is not the host, whatever it decodes to.
    if key != sample.key:
        shown_key = None if key is None else key.decode("utf-8", "replace")
        raise BadMessage(f"message key {shown_key!r:.80} must be the host name "
                         f"{sample.host!r:.80}")
    return sample


def _hints(cls: Any) -> dict[str, Any]:
    """The record's field types, resolved once (they are strings under PEP 563)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def _record(cls: type[_Record], doc: Any, path: str) -> _Record:
    if not isinstance(doc, Mapping):
        raise BadMessage(f"telemetry {path or 'message'!r} must be an object")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        where = f"{path}.{field.name}" if path else field.name
        hint = _hints(cls)[field.name]
        if doc.get(field.name) is None and not _nullable(hint):
            raise BadMessage(f"telemetry lacks required field {where!r}")
        values[field.name] = _value(hint, doc.get(field.name), where)
    return cls(**values)


def _nullable(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = (arg for arg in get_args(hint) if arg is not type(None))
        return _value(inner, value, where)
    if origin is Literal:
        if value not in get_args(hint):
            raise BadMessage(f"telemetry {where!r} must be one of {get_args(hint)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise BadMessage(f"telemetry {where!r} must be a list")
        (item,) = get_args(hint)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _record(hint, value, where)
    return _scalar(hint, value, where)


def _scalar(hint: type, value: Any, where: str) -> Any:
    if hint is str:
        if not isinstance(value, str):
            raise BadMessage(f"telemetry {where!r} must be a string, got {value!r:.80}")
        if where.split("[")[0] in _NAME_FIELDS and not 0 < len(value) <= MAX_NAME_LENGTH:
            raise BadMessage(f"telemetry {where!r} must be 1 to {MAX_NAME_LENGTH} characters")
        return value
    # bool is an int in Python but never a reading here.
    allowed = (int,) if hint is int else (int, float)
    if where == "event_time" and type(value) is int and not (
            MIN_EVENT_TIME_MS <= value <= MAX_EVENT_TIME_MS):
        raise BadMessage(f"telemetry 'event_time' {value} is out of range: "
                         "send UTC epoch milliseconds")
    if type(value) not in allowed or not 0 <= value < math.inf:
        kind = "an integer" if hint is int else "a number"
        raise BadMessage(f"telemetry {where!r} must be {kind} >= 0, got {value!r:.80}")
    return float(value) if hint is float else value
