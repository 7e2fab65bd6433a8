"""Grafana dashboards as code: writes ``dashboards/*.json`` next to this file.

    python deploy/grafana/dashboards.py          # rewrite the JSON after changing a panel

Panels read ClickHouse (the grafana-clickhouse-datasource plugin, datasource uid
``clickhouse``) and, for the workers themselves, Prometheus (uid ``prometheus``). Every
ClickHouse panel's SQL is run by the integration tests against the embedded ClickHouse on
the demo's data and must return rows; the tests also check that the JSON here is what this
script writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DB = "driftline"
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
TABLE, SERIES = 1, 0  # the plugin's "format": table, time series


def sql(ref: str, query: str, fmt: int = SERIES) -> dict[str, Any]:
    # queryType is what plugin v4 reads; format what its earlier versions did.
    return {"refId": ref, "datasource": CLICKHOUSE, "editorType": "sql",
            "queryType": "timeSeries" if fmt == SERIES else "table", "format": fmt,
            "rawSql": query.strip()}


def promql(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend}


def panel(title: str, kind: str, targets: list[dict[str, Any]], x: int, y: int, w: int = 12,
          h: int = 8, **options: Any) -> dict[str, Any]:
    return {"title": title, "type": kind, "targets": targets,
            "datasource": targets[0]["datasource"],
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, **options}


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": CLICKHOUSE,
            "query": query, "definition": query, "refresh": 2, "sort": 1,
            "includeAll": False, "multi": False}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]],
              variables: Sequence[dict[str, Any]] = (), time_from: str = "now-6h",
              tags: tuple[str, ...] = ("driftline",)) -> dict[str, Any]:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {"uid": uid, "title": title, "tags": list(tags), "schemaVersion": 39,
            "editable": True, "refresh": "1m", "time": {"from": time_from, "to": "now"},
            "timezone": "utc", "templating": {"list": list(variables)}, "panels": panels}


MODEL = variable("model", f"SELECT DISTINCT model FROM {DB}.feature_windows ORDER BY model",
                 "model")
VERSION = variable("version", f"SELECT DISTINCT model_version FROM {DB}.feature_windows "
                              "WHERE model = '${model}' ORDER BY model_version", "version")
FEATURE = variable("feature", f"SELECT DISTINCT feature FROM {DB}.feature_windows WHERE model "
                              "= '${model}' AND length(bin_counts) > 0 ORDER BY feature",
                   "feature")


def fleet() -> dict[str, Any]:
    return dashboard("driftline-fleet", "driftline: fleet", [
        panel("Models", "stat", [sql("A", f"SELECT uniqExact(model) AS models FROM "
                                          f"{DB}.feature_windows WHERE $__timeFilter(window_start)",
                                     TABLE)], 0, 0, 6, 4),
        panel("Versions", "stat", [sql("A", f"SELECT uniqExact(model, model_version) AS versions "
                                            f"FROM {DB}.feature_windows WHERE "
                                            "$__timeFilter(window_start)", TABLE)], 6, 0, 6, 4),
        panel("Open incidents", "stat", [sql("A", f"""
SELECT countIf(last_state != 'resolved') AS open
FROM (SELECT id, argMax(state, written_at) AS last_state FROM {DB}.alerts FINAL GROUP BY id)
""", TABLE)], 12, 0, 12, 4),
        panel("Worst drift per model version, latest window", "table", [sql("A", f"""
SELECT model, model_version, argMax(feature, value) AS feature, round(max(value), 3) AS psi,
       max(window_start) AS window
FROM {DB}.drift_scores FINAL
WHERE metric = 'psi' AND (model, model_version, window_start) IN (
    SELECT model, model_version, max(window_start) FROM {DB}.drift_scores FINAL
    WHERE metric = 'psi' AND $__timeFilter(window_start) GROUP BY model, model_version)
GROUP BY model, model_version ORDER BY psi DESC
""", TABLE)], 0, 4, 24, 8),
        panel("Open incidents", "table", [sql("A", f"""
SELECT argMax(model, written_at) AS model, argMax(model_version, written_at) AS version,
       argMax(severity, written_at) AS severity, argMax(metric, written_at) AS metric,
       min(first_seen) AS since, argMax(summary, written_at) AS summary
FROM {DB}.alerts FINAL
GROUP BY id HAVING argMax(state, written_at) != 'resolved'
ORDER BY since DESC
""", TABLE)], 0, 12, 24, 10),
    ])


def model() -> dict[str, Any]:
    return dashboard("driftline-model", "driftline: model", [
        panel("Drift per feature (PSI) over windows", "status-history", [sql("A", f"""
SELECT window_start AS time, feature, max(value) AS psi
FROM {DB}.drift_scores FINAL
WHERE model = '${{model}}' AND model_version = '${{version}}' AND metric = 'psi'
  AND $__timeFilter(window_start)
GROUP BY window_start, feature ORDER BY window_start
""")], 0, 0, 24, 9, fieldConfig={"defaults": {"thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "yellow", "value": 0.1},
            {"color": "red", "value": 0.25}]}, "color": {"mode": "thresholds"}},
            "overrides": []}),
        panel("${feature}: latest window against the version's first 5 windows", "barchart",
              [sql("A", f"""
WITH baseline AS (
    SELECT sumForEach(bin_counts) AS counts, any(bin_edges) AS edges
    FROM {DB}.feature_windows FINAL
    WHERE model = '${{model}}' AND model_version = '${{version}}' AND feature = '${{feature}}'
      AND window_start IN (SELECT window_start FROM {DB}.feature_windows FINAL
                           WHERE model = '${{model}}' AND model_version = '${{version}}'
                             AND feature = '${{feature}}' ORDER BY window_start LIMIT 5)),
latest AS (
    SELECT bin_counts AS counts FROM {DB}.feature_windows FINAL
    WHERE model = '${{model}}' AND model_version = '${{version}}' AND feature = '${{feature}}'
    ORDER BY window_start DESC LIMIT 1)
SELECT arrayJoin(arrayEnumerate(baseline.counts)) AS bin,
       round(baseline.counts[bin] / arraySum(baseline.counts), 4) AS reference,
       round(latest.counts[bin] / arraySum(latest.counts), 4) AS latest
FROM baseline, latest
""", TABLE)], 0, 9, 12, 9),
        panel("Quality from delayed labels", "timeseries", [sql("A", f"""
SELECT window_start AS time, accuracy, coverage
FROM {DB}.performance FINAL
WHERE model = '${{model}}' AND model_version = '${{version}}' AND $__timeFilter(window_start)
ORDER BY window_start
"""), sql("B", f"""
SELECT window_start AS time, delay_p90_seconds AS label_delay_p90_s
FROM {DB}.performance FINAL
WHERE model = '${{model}}' AND model_version = '${{version}}' AND $__timeFilter(window_start)
ORDER BY window_start
""")], 12, 9, 12, 9),
        panel("Service latency p95 and errors", "timeseries", [sql("A", f"""
SELECT window_start AS time, latency_p95_ms, error_rate * 100 AS error_percent
FROM {DB}.service_windows FINAL
WHERE model = '${{model}}' AND model_version = '${{version}}' AND $__timeFilter(window_start)
ORDER BY window_start
""")], 0, 18, 12, 8),
        panel("Its GPUs: utilisation and temperature", "timeseries", [sql("A", f"""
SELECT window_start AS time, avg(utilization_gpu_percent_mean) AS gpu_util_percent,
       max(temperature_c_max) AS gpu_temperature_c
FROM {DB}.gpu_windows FINAL
WHERE has(models, '${{model}}') AND $__timeFilter(window_start)
GROUP BY window_start ORDER BY window_start
""")], 12, 18, 12, 8),
        panel("Its alerts", "table", [sql("A", f"""
SELECT window_end AS at, state, severity, model_version AS version, feature, metric,
       round(value, 3) AS value, summary
FROM {DB}.alerts FINAL
WHERE model = '${{model}}' AND $__timeFilter(window_end)
ORDER BY window_end DESC
""", TABLE)], 0, 26, 24, 9),
    ], [MODEL, VERSION, FEATURE])


def alerts() -> dict[str, Any]:
    return dashboard("driftline-alerts", "driftline: alerts", [
        panel("Incidents opened per window, by category", "timeseries", [sql("A", f"""
SELECT toStartOfMinute(first_seen) AS time, splitByChar(':', dedup_key)[1] AS category,
       count() AS opened
FROM {DB}.alerts FINAL
WHERE state = 'open' AND $__timeFilter(first_seen)
GROUP BY time, category ORDER BY time
""")], 0, 0, 24, 8, options={"legend": {"displayMode": "table"}}),
        panel("Every alert, newest first", "table", [sql("A", f"""
SELECT window_end AS at, state, severity, model, model_version AS version, feature, metric,
       round(value, 3) AS value, round(threshold, 3) AS threshold, summary
FROM {DB}.alerts FINAL
WHERE $__timeFilter(window_end)
ORDER BY window_end DESC LIMIT 500
""", TABLE)], 0, 8, 24, 14),
    ])


def gpu_panel(title: str, column: str, name: str, x: int, y: int) -> dict[str, Any]:
    """One GPU column over windows, a series per host and GPU."""
    return panel(title, "timeseries", [sql("A", f"""
SELECT window_start AS time, concat(host, ' gpu', toString(gpu_index)) AS gpu,
       {column} AS {name}
FROM {DB}.gpu_windows FINAL WHERE $__timeFilter(window_start)
ORDER BY window_start
""")], x, y)


def telemetry() -> dict[str, Any]:
    return dashboard("driftline-telemetry", "driftline: hosts and GPUs", [
        gpu_panel("GPU utilisation", "utilization_gpu_percent_mean", "util_percent", 0, 0),
        gpu_panel("GPU temperature (max)", "temperature_c_max", "temperature_c", 12, 0),
        gpu_panel("GPU memory used", "memory_used_percent_max", "memory_percent", 0, 8),
        panel("Hosts: CPU and memory", "timeseries", [sql("A", f"""
SELECT window_start AS time, host, cpu_percent_mean AS cpu_percent,
       memory_percent_max AS memory_percent
FROM {DB}.host_windows FINAL WHERE $__timeFilter(window_start)
ORDER BY window_start
""")], 12, 8),
    ])


def workers() -> dict[str, Any]:
    return dashboard("driftline-workers", "driftline: workers (Prometheus)", [
        panel("Events per second, by kind", "timeseries", [
            promql("A", "sum by (kind) (rate(driftline_events_total[5m]))", "{{kind}}")], 0, 0),
        panel("Consumer lag per partition", "timeseries", [
            promql("A", "max by (topic, partition) (driftline_consumer_lag_messages)",
                   "{{topic}}/{{partition}}")], 12, 0),
        panel("Dead letters and late events per minute", "timeseries", [
            promql("A", "sum by (topic, reason) (increase(driftline_dead_letters_total[1m]))",
                   "dead: {{topic}} {{reason}}"),
            promql("B", "sum by (topic) (increase(driftline_late_events_total[1m]))",
                   "late: {{topic}}")], 0, 8),
        panel("Checkpoint and ClickHouse write p95 (s)", "timeseries", [
            promql("A", "histogram_quantile(0.95, sum by (le, processor) "
                        "(rate(driftline_checkpoint_seconds_bucket[5m])))", "{{processor}}"),
            promql("B", "histogram_quantile(0.95, sum by (le) "
                        "(rate(driftline_clickhouse_write_seconds_bucket[5m])))",
                   "ClickHouse write")], 12, 8),
        panel("Open incidents", "timeseries", [
            promql("A", "sum by (category, severity) (driftline_open_incidents)",
                   "{{category}} {{severity}}")], 0, 16),
        panel("Windows written per minute", "timeseries", [
            promql("A", "sum by (table) (increase(driftline_windows_written_total[1m]))",
                   "{{table}}")], 12, 16),
        panel("Agents: samples sent, dropped, buffered", "timeseries", [
            promql("A", "sum by (host) (rate(driftline_agent_sent_samples_total[5m]))",
                   "sent/s {{host}}"),
            promql("B", "sum by (host) (increase(driftline_agent_dropped_samples_total[5m]))",
                   "dropped {{host}}"),
            promql("C", "sum by (host) (driftline_agent_buffered_samples)",
                   "buffered {{host}}")], 0, 24, 24),
    ], time_from="now-1h")


DASHBOARDS = {"fleet": fleet, "model": model, "alerts": alerts, "telemetry": telemetry,
              "workers": workers}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main() -> None:
    out = HERE / "dashboards"
    out.mkdir(exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text, "utf-8")


if __name__ == "__main__":
    main()
