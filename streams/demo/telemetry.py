"""Host and GPU telemetry for the demo's simulated time, from recorded NVML readings.

There is no GPU here, so each demo host replays the shipped recording through the same
:class:`~driftline.streams.agent.gpu.GpuSampler` the agent uses on real GPUs; host numbers
come from this machine (psutil). Samples carry the traffic's simulated event time, one per
tick, so GPU windows line up with the models' windows. While the churn model's service is
slow, its host's GPU runs hot and throttles: the story the side-by-side query tells.
"""

from __future__ import annotations

import dataclasses

from aiokafka import AIOKafkaProducer

from driftline.models.telemetry.sample import GpuSample, TelemetrySample
from driftline.streams.agent import GpuSampler, HostSampler, ReplayBackend
from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

#: Demo host -> the models it serves.
HOSTS = {"gpu-node-01": ["fraud-detector"], "gpu-node-02": ["churn-predictor"]}
HOT_HOST = "gpu-node-02"
#: A recording of a healthy host (no XID, ECC, heat or memory pressure).
RECORDING = "h100x2-steady"


class DemoTelemetry:
    def __init__(self, settings: Settings, interval_seconds: float) -> None:
        self.settings = settings
        self.interval_seconds = interval_seconds
        self._gpus = {host: GpuSampler(ReplayBackend.shipped(RECORDING)) for host in HOSTS}
        self._host = HostSampler()
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0

    async def start(self) -> None:
        for sampler in self._gpus.values():
            sampler.start()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                          **kafka_client_options(self.settings))
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        for sampler in self._gpus.values():
            sampler.close()

    async def tick(self, event_time: int, slow: bool) -> None:
        """Send one sample per demo host at ``event_time``; ``slow``: the hot spell."""
        assert self._producer is not None, "start() first"
        host_metrics, _ = self._host.sample()
        for host, models in HOSTS.items():
            gpus = self._gpus[host].sample()
            if slow and host == HOT_HOST:
                gpus = [_hot(gpu) for gpu in gpus]
            sample = TelemetrySample(
                host=host, event_time=event_time, interval_seconds=self.interval_seconds,
                models=models, gpu_source=f"replay:{RECORDING}", gpu_error=None, gpus=gpus,
                host_metrics=host_metrics, processes=[], dropped=0)
            await self._producer.send(self.settings.telemetry_topic, sample.to_json(),
                                      key=sample.key)
            self.sent += 1


def _hot(gpu: GpuSample) -> GpuSample:
    # Thermal slowdown: hotter, busier, slower clocks (NVML bit 0x40: hw_thermal_slowdown).
    return dataclasses.replace(
        gpu, temperature_c=91, utilization_gpu_percent=100,
        sm_clock_mhz=None if gpu.sm_clock_mhz is None else gpu.sm_clock_mhz // 2,
        throttle_reasons=0x40, throttle_reason_names=["hw_thermal_slowdown"])
