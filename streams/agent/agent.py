"""The agent's loop: sample every interval, buffer, send to Kafka; survive Kafka outages.

Two tasks share a :class:`~driftline.streams.agent.buffer.SampleBuffer`: the sampling loop
pushes one sample per interval (on a fixed schedule, skipping ticks it missed rather than
bunching them), and the sender sends them in order, oldest first, retrying while Kafka is
unreachable. NVML calls run in one dedicated thread: a GPU that hangs NVML blocks that
thread only, never the event loop, and no second call piles up behind it (the sample goes
out without GPU readings and says why in ``gpu_error``). psutil calls run in a worker
thread too (they read /proc).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from driftline.models.telemetry.sample import GpuSample, HostMetrics, ProcessSample, TelemetrySample
from driftline.streams.agent.buffer import Message, SampleBuffer
from driftline.streams.agent.config import AgentConfig
from driftline.streams.agent.gpu import GpuSampler
from driftline.streams.agent.host import HostSampler
from driftline.streams.agent.nvml import NvmlBackend, PynvmlBackend, pynvml
from driftline.streams.kafka_options import kafka_client_options, stop_producer
from driftline.streams.settings import Settings

__all__ = ["AgentStats", "TelemetryAgent"]

log = logging.getLogger("driftline.streams.agent")

_RECONNECT_MAX_S = 5.0
_WARN_EVERY_S = 30.0
#: How long ``--once`` lets CPU and I/O counters run before its one sample.
_ONCE_MEASURE_S = 1.0


@dataclasses.dataclass
class AgentStats:
    """Counters since the agent started."""

    sampled: int = 0
    sent: int = 0
    #: Samples dropped: the buffer was full (Kafka away), or they were unsent at stop.
    dropped: int = 0
    send_errors: int = 0


class TelemetryAgent:
    """Samples this host every ``agent_interval_seconds`` and publishes to the telemetry topic.

    Parameters
    ----------
    settings
        Kafka connection, ``telemetry_topic`` and the ``agent_*`` fields.
    backend
        Where GPU readings come from: real NVML by default, or a
        :class:`~driftline.streams.agent.replay.ReplayBackend`; without a usable NVML the
        agent publishes host metrics only, after one log line saying so.

    An agent runs once: :meth:`run` or :meth:`sample_once`, then it is spent.

    Usage::

        stop = asyncio.Event()   # set it (e.g. from a signal handler) to stop
        stats = await TelemetryAgent(settings).run(stop)
    """

    def __init__(self, settings: Settings, *, backend: NvmlBackend | None = None) -> None:
        self.settings = settings
        self.config = AgentConfig.from_settings(settings)
        self.backend: NvmlBackend = PynvmlBackend() if backend is None else backend
        self.stats = AgentStats()
        self._buffer = SampleBuffer(self.config.buffer)
        self._nvml_thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="driftline-nvml")
        self._gpus: GpuSampler | None = None
        self._gpu_error: str | None = None
        self._gpu_pending: asyncio.Future[list[GpuSample]] | None = None
        self._host: HostSampler | None = None
        self._producer: Any = None
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing is buffered or in flight
        self._drained.set()
        self._warned_at: dict[str, float] = {}

    # --- public --------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Samples waiting to be sent."""
        return len(self._buffer)

    async def run(self, stop: asyncio.Event, grace: float = 5.0) -> AgentStats:
        """Sample and publish until ``stop`` is set; then send what is buffered for at most
        ``grace`` seconds and return the counters."""
        await self._start()
        sender = asyncio.create_task(self._send_forever(), name="driftline-agent-sender")
        loop = asyncio.get_running_loop()
        try:
            next_at = loop.time()
            while True:
                # The first sample too waits an interval: rates then cover a whole interval.
                next_at = max(next_at + self.config.interval_seconds, loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(next_at - loop.time()):
                        await stop.wait()
                if stop.is_set():
                    break
                self._enqueue(await self._sample())
        finally:
            await self._stop(sender, grace)
        return self.stats

    async def sample_once(self) -> TelemetrySample:
        """One sample without Kafka (``driftline agent --once``): counters run for a second
        first, so CPU and I/O rates mean something."""
        await self._start()
        try:
            await asyncio.sleep(min(_ONCE_MEASURE_S, self.config.interval_seconds))
            return await self._sample()
        finally:
            await self._close_gpus()

    # --- sampling --------------------------------------------------------------------------

    async def _start(self) -> None:
        self._host = await asyncio.to_thread(
            HostSampler, self.config.pids, self.config.process_pattern,
            self.config.model_arg_pattern)
        gpus = GpuSampler(self.backend)
        loop = asyncio.get_running_loop()
        try:
            count = await loop.run_in_executor(self._nvml_thread, gpus.start)
        except pynvml.NVMLError as exc:
            # One line, then host-only: no driver is a normal state for a CPU host.
            self._gpu_error = f"NVML not available: {exc}"
            log.warning("no GPU telemetry (NVML not available: %s); publishing host metrics "
                        "only. On a GPU host, check that the NVIDIA driver is loaded "
                        "(nvidia-smi).", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a broken binding must not stop host telemetry
            self._gpu_error = f"GPU sampling could not start: {exc!r:.200}"
            log.error("no GPU telemetry (%r); publishing host metrics only", exc)
            return
        self._gpus = gpus
        log.info("GPU telemetry from %s: %d GPU(s)", self.backend.source, count)

    async def _sample(self) -> TelemetrySample:
        assert self._host is not None
        gpus, gpu_error = await self._read_gpus()
        host, processes = await asyncio.to_thread(self._host.sample)
        return self._assemble(gpus, gpu_error, host, processes)

    async def _read_gpus(self) -> tuple[list[GpuSample], str | None]:
        if self._gpus is None:
            return [], self._gpu_error
        if self._gpu_pending is not None and not self._gpu_pending.done():
            return [], "NVML has not answered since the previous sample; GPU readings skipped"
        loop = asyncio.get_running_loop()
        pending = self._gpu_pending = loop.run_in_executor(self._nvml_thread,
                                                           self._gpus.sample)
        pending.add_done_callback(_consume_outcome)  # a late failure is reported, not lost
        await asyncio.wait({pending}, timeout=self.config.interval_seconds)
        if not pending.done():
            return [], f"NVML did not answer within {self.config.interval_seconds:g} s"
        try:
            return pending.result(), None
        except Exception as exc:  # a sampler bug must not stop host telemetry
            log.exception("GPU sampling failed")
            return [], f"GPU sampling failed: {exc!r:.200}"

    def _assemble(self, gpus: list[GpuSample], gpu_error: str | None, host: HostMetrics,
                  processes: list[ProcessSample]) -> TelemetrySample:
        gpu_memory = _gpu_memory_by_pid(gpus)
        processes = [dataclasses.replace(p, gpu_memory_bytes=gpu_memory.get(p.pid))
                     for p in processes]
        models = list(self.config.models) or sorted({p.model for p in processes if p.model})
        self.stats.sampled += 1
        return TelemetrySample(
            host=self.config.host, event_time=time.time_ns() // 1_000_000,
            interval_seconds=float(self.config.interval_seconds), models=models,
            gpu_source=self.backend.source if self._gpus is not None else None,
            gpu_error=gpu_error, gpus=gpus, host_metrics=host, processes=processes,
            dropped=self.stats.dropped)

    def _enqueue(self, sample: TelemetrySample) -> None:
        # Drop before encoding, so the sample carries the count including its own drop.
        before = self._buffer.dropped
        self._buffer.make_room()
        if self._buffer.dropped > before:
            self.stats.dropped += self._buffer.dropped - before
            sample = dataclasses.replace(sample, dropped=self.stats.dropped)
            self._warn("buffer", "telemetry buffer full (%d samples, Kafka unreachable): "
                       "dropping the oldest; %d dropped so far", self.config.buffer,
                       self.stats.dropped)
        self._buffer.push(Message(sample.key, sample.to_json()))
        self._drained.clear()
        self._wakeup.set()

    # --- sending ---------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        await self._connect()
        delay = 0.1
        while True:
            message = self._buffer.pop_oldest()
            if message is None:
                self._drained.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self._producer.send_and_wait(self.config.topic, message.value,
                                                   key=message.key)
            except asyncio.CancelledError:
                self._requeue(message)
                raise
            except Exception as exc:  # noqa: BLE001 - keep the sample, retry with backoff
                self._requeue(message)
                self.stats.send_errors += 1
                self._warn("send", "cannot send telemetry to %s (%r); %d samples buffered, "
                           "%d dropped so far; retrying", self.settings.kafka_bootstrap, exc,
                           len(self._buffer), self.stats.dropped)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _RECONNECT_MAX_S)
            else:
                self.stats.sent += 1
                delay = 0.1

    def _requeue(self, message: Message) -> None:
        before = self._buffer.dropped
        self._buffer.requeue(message)
        self.stats.dropped += self._buffer.dropped - before

    async def _connect(self) -> None:
        options = kafka_client_options(self.settings)
        # No idempotence: the embedded broker rejects it, and a duplicate sample is harmless.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, client_id="driftline-agent",
            acks="all", request_timeout_ms=15_000, **options)
        delay = 0.1
        while True:
            try:
                await self._producer.start()
                break
            except Exception as exc:  # noqa: BLE001 - samples stay buffered; retry
                self._warn("connect", "cannot reach Kafka at %s (%r); retrying, samples stay "
                           "buffered (up to %d)", self.settings.kafka_bootstrap, exc,
                           self.config.buffer)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _RECONNECT_MAX_S)
        await self._ensure_topic(options)

    async def _ensure_topic(self, options: dict[str, object]) -> None:
        """Create the telemetry topic if missing; where the agent may not (ACLs), say so once
        and rely on whoever can (the broker's auto-creation, an operator)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, **options)
        try:
            await admin.start()
            if self.config.topic not in set(await admin.list_topics()):
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(self.config.topic,
                                                        self.settings.partitions,
                                                        self.settings.replication_factor)])
        except Exception as exc:  # noqa: BLE001 - sending may still work: only warn
            log.warning("cannot create topic %s (%r); create it with %d partitions if sends "
                        "fail", self.config.topic, exc, self.settings.partitions)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    # --- stopping --------------------------------------------------------------------------

    async def _stop(self, sender: asyncio.Task[None], grace: float) -> None:
        deadline = time.monotonic() + grace
        if self._producer is not None and not self._drained.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._drained.wait()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        unsent = self._buffer.discard()
        if unsent:
            self.stats.dropped += unsent
            log.warning("telemetry agent stopped with %d samples unsent (Kafka unreachable)",
                        unsent)
        if self._producer is not None:
            await stop_producer(self._producer, max(deadline - time.monotonic(), 0.5),
                                "driftline agent")
        await self._close_gpus()

    async def _close_gpus(self) -> None:
        if self._gpus is not None:
            gpus, self._gpus = self._gpus, None
            if self._gpu_pending is None or self._gpu_pending.done():
                await asyncio.get_running_loop().run_in_executor(self._nvml_thread, gpus.close)
        self._nvml_thread.shutdown(wait=False)  # a hung NVML call must not hang the exit

    def _warn(self, topic: str, message: str, *args: Any) -> None:
        """Log at most every _WARN_EVERY_S per topic: an outage is one line, not a flood."""
        now = time.monotonic()
        if now >= self._warned_at.get(topic, 0.0):
            self._warned_at[topic] = now + _WARN_EVERY_S
            log.warning(message, *args)


def _gpu_memory_by_pid(gpus: list[GpuSample]) -> dict[int, int]:
    """Each process's memory over all GPUs, where NVML attributes it."""
    total: dict[int, int] = {}
    for gpu in gpus:
        for process in gpu.processes or ():
            if process.used_memory_bytes is not None:
                total[process.pid] = total.get(process.pid, 0) + process.used_memory_bytes
    return total


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("late GPU sampling failure: %r", future.exception())
