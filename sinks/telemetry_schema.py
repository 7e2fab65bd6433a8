"""The ClickHouse tables of GPU and host telemetry windows (listed in
:data:`driftline.sinks.schema.TABLES`).

One row per GPU (``gpu_windows``) and per host (``host_windows``) and event-time window,
``ReplacingMergeTree(revision)`` keyed by exactly that, so a replay rewrites a row
instead of adding one, and of two rows the later write wins (``revision`` is the write
version, see :mod:`driftline.sinks.schema`). Every reading has ``<reading>_mean``,
``_max`` and ``_p95`` columns (NULL when every sample had it null), and ``null_counts``
says how many samples had it null.
"""

from __future__ import annotations

from driftline.models.telemetry.aggregates import GPU_METRICS, HOST_METRICS

__all__ = ["GPU_COLUMNS", "GPU_WINDOWS", "HOST_COLUMNS", "HOST_WINDOWS", "STATS",
           "metric_columns"]

STATS = ("mean", "max", "p95")
_UNITS = {
    "utilization_gpu_percent": "GPU busy, % of the sample period",
    "utilization_memory_percent": "memory controller busy, %",
    "memory_used_percent": "GPU memory used, % of total",
    "memory_used_bytes": "GPU memory used, bytes",
    "temperature_c": "GPU temperature, C",
    "power_draw_w": "power draw, W",
    "power_percent": "power draw, % of the enforced limit",
    "sm_clock_mhz": "SM clock, MHz",
    "memory_clock_mhz": "memory clock, MHz",
    "pcie_tx_kb_per_s": "PCIe transmit, KB/s",
    "pcie_rx_kb_per_s": "PCIe receive, KB/s",
    "cpu_percent": "CPU use over all cores, %",
    "load_1m": "1-minute load average",
    "memory_percent": "host memory used, %",
    "swap_percent": "swap used, %",
    "disk_read_bytes_per_s": "disk reads, bytes/s",
    "disk_write_bytes_per_s": "disk writes, bytes/s",
    "net_sent_bytes_per_s": "network sent, bytes/s",
    "net_recv_bytes_per_s": "network received, bytes/s",
}
_STAT_WORDS = {"mean": "mean", "max": "largest", "p95": "exact 95th percentile (linear)"}


def metric_columns(metrics: tuple[str, ...]) -> list[str]:
    """``<metric>_<stat>`` for every metric and stat, in table order."""
    return [f"{metric}_{stat}" for metric in metrics for stat in STATS]


def _metric_ddl(metrics: tuple[str, ...]) -> str:
    return "\n".join(f"    {metric}_{stat} Nullable(Float64) COMMENT "
                     f"'{_UNITS[metric]}: {_STAT_WORDS[stat]} over the samples',"
                     for metric in metrics for stat in STATS)


GPU_COLUMNS = [
    "host", "gpu_index", "gpu_uuid", "gpu_name", "window_start", "window_end", "models",
    "samples", *metric_columns(tuple(GPU_METRICS)), "null_counts", "throttled_samples",
    "power_thermal_samples", "throttle_reasons", "xid_errors", "xid_codes", "ecc_corrected",
    "ecc_uncorrected", "revision",
]
HOST_COLUMNS = [
    "host", "window_start", "window_end", "models", "samples",
    *metric_columns(tuple(HOST_METRICS)), "null_counts", "revision",
]

GPU_WINDOWS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.gpu_windows
(
    host LowCardinality(String) COMMENT 'host name, the telemetry message key',
    gpu_index UInt16 COMMENT 'NVML device index on the host',
    gpu_uuid String COMMENT 'GPU UUID (empty where NVML gave none)',
    gpu_name LowCardinality(String) COMMENT 'GPU product name',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start (inclusive)',
    window_end DateTime64(3, 'UTC') COMMENT 'event-time window end (exclusive)',
    -- The models whose serving processes hold memory on the GPU where the agent can tell.
    models Array(String) COMMENT 'models served from this GPU, else every model of the host',
    samples UInt32 COMMENT 'samples in which the GPU was reported',
{_metric_ddl(tuple(GPU_METRICS))}
    null_counts Map(String, UInt32) COMMENT 'samples in which each reading was null',
    throttled_samples UInt32 COMMENT 'samples with any clocks-event (throttle) reason but gpu_idle',
    -- sw_power_cap, hw_slowdown, sw/hw_thermal_slowdown or hw_power_brake_slowdown.
    power_thermal_samples UInt32 COMMENT 'samples in which power or heat held the GPU back',
    throttle_reasons Array(String) COMMENT 'every clocks-event reason seen in the window',
    xid_errors UInt32 COMMENT 'XID errors reported in the window',
    xid_codes Array(UInt32) COMMENT 'their distinct codes',
    ecc_corrected UInt64 COMMENT 'increase of the volatile corrected ECC error count',
    ecc_uncorrected UInt64 COMMENT 'increase of the volatile uncorrected ECC error count',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write of a window wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (host, gpu_index, window_start)
COMMENT 'Each GPU per host and event-time window, from driftline agent telemetry'
"""

HOST_WINDOWS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.host_windows
(
    host LowCardinality(String) COMMENT 'host name, the telemetry message key',
    window_start DateTime64(3, 'UTC') COMMENT 'event-time window start (inclusive)',
    window_end DateTime64(3, 'UTC') COMMENT 'event-time window end (exclusive)',
    models Array(String) COMMENT 'models the host served in the window',
    samples UInt32 COMMENT 'telemetry samples in the window',
{_metric_ddl(tuple(HOST_METRICS))}
    null_counts Map(String, UInt32) COMMENT 'samples in which each reading was null',
    revision UInt64 COMMENT 'write version (ns since epoch): the latest write of a window wins',
    written_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the row was written'
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(window_start)
ORDER BY (host, window_start)
COMMENT 'Each host per event-time window: CPU, memory, disk and network'
"""
