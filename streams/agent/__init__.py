"""The host/GPU telemetry agent, ``driftline agent``: one per inference host.

Every ``DRIFTLINE_AGENT_INTERVAL_SECONDS`` it reads the GPUs (NVML), the host (psutil)
and the serving processes, and publishes one
:class:`driftline.models.telemetry.sample.TelemetrySample` to the telemetry topic, keyed by host
name. It never stops for a missing GPU driver (host metrics only) or a Kafka outage (a bounded
buffer that drops, and counts, the oldest).

- :class:`TelemetryAgent` runs the loop; :class:`GpuSampler` and :class:`HostSampler` take
  the readings and can be used alone;
- :class:`NvmlBackend` is the NVML surface the GPU sampler uses: :class:`PynvmlBackend`
  for real GPUs, :class:`ReplayBackend` for recorded readings (demo, tests, no GPU).
"""

from driftline.streams.agent.agent import AgentStats, TelemetryAgent
from driftline.streams.agent.buffer import SampleBuffer
from driftline.streams.agent.config import AgentConfig
from driftline.streams.agent.gpu import GpuSampler, throttle_reason_names
from driftline.streams.agent.host import HostSampler
from driftline.streams.agent.nvml import NvmlBackend, PynvmlBackend
from driftline.streams.agent.replay import ReplayBackend, recording_names

__all__ = ["AgentConfig", "AgentStats", "GpuSampler", "HostSampler", "NvmlBackend",
           "PynvmlBackend", "ReplayBackend", "SampleBuffer", "TelemetryAgent",
           "recording_names", "throttle_reason_names"]
