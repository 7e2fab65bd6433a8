"""Host and serving-process readings through psutil.

CPU percentages and I/O rates are measured between two calls of :meth:`HostSampler.sample`
(the first against a reading taken when the sampler is made), so call it once per
interval. Calls
read /proc and can take tens of milliseconds with many processes: run them off the event
loop.

Serving processes are chosen by PID, by a regular expression searched in their name and
command line, or both. The model a process serves is, in this order, the value of
``DRIFTLINE_MODEL`` in its environment (readable for processes of the same user, or by
root), or the first group of ``model_arg_pattern`` in its command line (by default
``--model X``, ``--model-name X``, ``--model-id X``, ``--served-model-name X``, also with
``=``).

>>> sampler = HostSampler()
>>> metrics, processes = sampler.sample()
>>> metrics.memory_total_bytes > 0, processes
(True, [])
>>> model_from_cmdline(["vllm", "serve", "--served-model-name", "churn"], MODEL_ARG_PATTERN)
'churn'
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import psutil

from driftline.models.events.wire import MAX_NAME_LENGTH
from driftline.models.telemetry.sample import HostMetrics, ProcessSample
from driftline.streams.settings import Settings

__all__ = ["MODEL_ARG_PATTERN", "MODEL_ENV_VAR", "HostSampler", "model_from_cmdline"]

log = logging.getLogger("driftline.streams.agent")

#: A serving process names its model with this environment variable.
MODEL_ENV_VAR = "DRIFTLINE_MODEL"
MODEL_ARG_PATTERN: str = Settings.agent_model_arg_pattern


class _Counters(NamedTuple):
    disk_read: int | None
    disk_write: int | None
    net_sent: int | None
    net_recv: int | None


class _Watched(NamedTuple):
    process: psutil.Process
    model: str | None


class HostSampler:
    """Host CPU, memory, swap, disk and network, and the chosen serving processes.

    Parameters
    ----------
    pids
        Serving processes by PID.
    pattern
        Serving processes whose name or command line this regular expression matches
        (``re.search``); the agent's own process is never matched.
    model_arg_pattern
        Finds the model in a command line (group 1, else the whole match); None: never.
    clock
        Monotonic seconds, for the rates.
    """

    def __init__(self, pids: Iterable[int] = (), pattern: str | None = None,
                 model_arg_pattern: str | None = MODEL_ARG_PATTERN,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pids = tuple(pids)
        self.pattern = re.compile(pattern) if pattern else None
        self.model_arg_pattern = re.compile(model_arg_pattern) if model_arg_pattern else None
        self._clock = clock
        self._watched: dict[int, _Watched] = {}
        self._missing_logged: set[int] = set()
        self._counters, self._at = _io_counters(), clock()
        # CPU percentages (host and process) measure since the previous call: this first
        # reading starts their clocks, so the next sample covers a real interval.
        self.sample()

    def sample(self) -> tuple[HostMetrics, list[ProcessSample]]:
        """The host's readings since the previous call, and the serving processes'."""
        return self._host(), self._processes()

    def _host(self) -> HostMetrics:
        now, counters = self._clock(), _io_counters()
        elapsed, before = now - self._at, self._counters
        self._counters, self._at = counters, now
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        load = _load_average()
        return HostMetrics(
            cpu_percent=float(psutil.cpu_percent(None)),
            cpu_percent_per_core=[float(p) for p in psutil.cpu_percent(None, percpu=True)],
            load_1m=load[0], load_5m=load[1], load_15m=load[2],
            memory_total_bytes=memory.total, memory_used_bytes=memory.used,
            memory_available_bytes=memory.available, memory_percent=float(memory.percent),
            swap_total_bytes=swap.total, swap_used_bytes=swap.used,
            swap_percent=float(swap.percent),
            disk_read_bytes_per_s=_rate(counters.disk_read, before.disk_read, elapsed),
            disk_write_bytes_per_s=_rate(counters.disk_write, before.disk_write, elapsed),
            net_sent_bytes_per_s=_rate(counters.net_sent, before.net_sent, elapsed),
            net_recv_bytes_per_s=_rate(counters.net_recv, before.net_recv, elapsed),
        )

    def _processes(self) -> list[ProcessSample]:
        watched: dict[int, _Watched] = {}
        new: set[int] = set()
        for pid, process in self._select().items():
            known = self._watched.get(pid)
            if known is not None and known.process.is_running():  # same PID, same process
                watched[pid] = known
            else:
                watched[pid] = self._watch(process)
                new.add(pid)
        samples = {pid: _read_process(w, first=pid in new) for pid, w in watched.items()}
        # Only what is still selected and alive is kept: state bounded by what is watched.
        self._watched = {pid: watched[pid] for pid, s in samples.items() if s is not None}
        return [s for s in samples.values() if s is not None]

    def _select(self) -> dict[int, psutil.Process]:
        selected: dict[int, psutil.Process] = {}
        for pid in self.pids:
            try:
                selected[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                if pid not in self._missing_logged:
                    self._missing_logged.add(pid)
                    log.warning("DRIFTLINE_AGENT_PIDS names process %d, which does not exist; "
                                "fix the PID list or select by DRIFTLINE_AGENT_PROCESS_PATTERN",
                                pid)
        if self.pattern is not None:
            own = os.getpid()
            for process in psutil.process_iter(["name", "cmdline"]):
                text = " ".join([process.info["name"] or "", *(process.info["cmdline"] or ())])
                if process.pid != own and self.pattern.search(text):
                    selected.setdefault(process.pid, process)
        return selected

    def _watch(self, process: psutil.Process) -> _Watched:
        """Start watching a process: prime its CPU clock, find its model (once: neither
        its environment nor its command line changes)."""
        model = None
        try:
            with process.oneshot():
                process.cpu_percent(None)
                model = _model_from_env(process) or model_from_cmdline(
                    process.cmdline(), self.model_arg_pattern)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        return _Watched(process, model)


def model_from_cmdline(cmdline: list[str], pattern: str | re.Pattern[str] | None) -> str | None:
    """The model named in a command line by ``pattern`` (group 1, else the whole match)."""
    if pattern is None:
        return None
    match = re.search(pattern, " ".join(cmdline))
    if match is None:
        return None
    return _model_name(match.group(1) if match.groups() else match.group(0))


def _model_from_env(process: psutil.Process) -> str | None:
    try:
        return _model_name(process.environ().get(MODEL_ENV_VAR))
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None  # another user's process: only the command line can tell


def _model_name(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if 0 < len(value) <= MAX_NAME_LENGTH else None


def _read_process(watched: _Watched, *, first: bool) -> ProcessSample | None:
    """A process's readings, or None if it has gone."""
    process = watched.process
    try:
        with process.oneshot():
            name = process.name()
            cpu = process.cpu_percent(None)
            try:
                rss: int | None = process.memory_info().rss
            except psutil.AccessDenied:
                rss = None
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        name, cpu, rss = None, None, None
    return ProcessSample(pid=process.pid, name=name, model=watched.model,
                         cpu_percent=None if first or cpu is None else float(cpu),
                         rss_bytes=rss, gpu_memory_bytes=None)


def _io_counters() -> _Counters:
    # Either may be missing: containers without block devices, platforms without counters.
    try:
        disk = psutil.disk_io_counters()
    except (OSError, RuntimeError):
        disk = None
    try:
        net = psutil.net_io_counters()
    except (OSError, RuntimeError):
        net = None
    return _Counters(disk.read_bytes if disk else None, disk.write_bytes if disk else None,
                     net.bytes_sent if net else None, net.bytes_recv if net else None)


def _rate(now: int | None, before: int | None, elapsed: float) -> float | None:
    """Per second; None without both counts, or when the counter went back (a reset)."""
    if now is None or before is None or elapsed <= 0 or now < before:
        return None
    return round((now - before) / elapsed, 1)


def _load_average() -> tuple[float | None, float | None, float | None]:
    try:
        one, five, fifteen = psutil.getloadavg()
    except (AttributeError, OSError):
        return None, None, None
    return float(one), float(five), float(fifteen)
