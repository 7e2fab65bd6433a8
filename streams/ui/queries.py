"""The SELECTs behind each page, with every value bound as a query parameter.

Nothing from a URL is ever formatted into SQL: the database is an ``Identifier``
parameter, names are ``String`` parameters, times are ``Int64`` milliseconds. A
:class:`Query` is plain data, so what the UI asks ClickHouse is tested without a server.

>>> q = drift("driftline", "fraud-detector", "v2", since_ms=0)
>>> q.sql.split()[0], sorted(q.parameters)
('SELECT', ['db', 'model', 'since', 'version'])
>>> valid_name("fraud-detector"), valid_name("x" * 300), valid_name("a\\nb")
(True, False, False)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_INCIDENTS", "MAX_WINDOWS", "PLACEHOLDER", "Query", "valid_name"]

#: The most windows a model page draws: the version's latest ones.
MAX_WINDOWS = 240
#: The most incidents an alert timeline draws: the latest by first bad window.
MAX_INCIDENTS = 300
#: A bound parameter in ClickHouse's syntax, ``{name:Type}``.
PLACEHOLDER = re.compile(r"\{(\w+):([\w()]+)\}")
# Model, version and feature names: anything printable of reasonable length. Whether such
# a name exists is asked of the tables; this only keeps junk from reaching them.
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def valid_name(text: str) -> bool:
    """Whether ``text`` may be a model, version or feature name (printable, 1..256)."""
    return _NAME.fullmatch(text) is not None


@dataclasses.dataclass(frozen=True)
class Query:
    """One SELECT and its bound parameters."""

    sql: str
    parameters: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.sql.split(None, 1)[0].upper() not in ("SELECT", "WITH"):
            raise ValueError("the UI only reads: every query is a SELECT")
        named = {name for name, _ in PLACEHOLDER.findall(self.sql)}
        if named != set(self.parameters):
            raise ValueError(f"parameters {sorted(self.parameters)} do not match the query's "
                             f"placeholders {sorted(named)}")


def data_end(db: str) -> Query:
    """The end of the newest feature window of any model (0 when there is none)."""
    return Query("SELECT toUnixTimestamp64Milli(max(window_end)) "
                 "FROM {db:Identifier}.feature_windows", {"db": db})


def fleet_windows(db: str) -> Query:
    """Per model version: windows seen, first and last window, and events in the hour of
    data before the newest window of any model (only that hour is read with FINAL)."""
    return Query("""
SELECT w.model, w.model_version, w.windows, w.first_window_ms, w.last_window_ms,
       ifNull(e.events, 0) AS events_last_hour
FROM (SELECT model, model_version, uniqExact(window_start) AS windows,
             toUnixTimestamp64Milli(min(window_start)) AS first_window_ms,
             toUnixTimestamp64Milli(max(window_start)) AS last_window_ms
      FROM {db:Identifier}.feature_windows GROUP BY model, model_version) AS w
LEFT JOIN (SELECT model, model_version, sum(events) AS events
           FROM (SELECT model, model_version, window_start, max(count) AS events
                 FROM {db:Identifier}.feature_windows FINAL
                 WHERE window_end > (SELECT max(window_end)
                                     FROM {db:Identifier}.feature_windows) - INTERVAL 1 HOUR
                 GROUP BY model, model_version, window_start)
           GROUP BY model, model_version) AS e
       ON e.model = w.model AND e.model_version = w.model_version
ORDER BY w.model, w.model_version
SETTINGS join_use_nulls = 1""", {"db": db})


def fleet_drift(db: str) -> Query:
    """Per model version: the worst PSI of its latest scored window, and whose it is."""
    return Query("""
SELECT model, model_version, toUnixTimestamp64Milli(window_start) AS window_ms,
       argMax(feature, value) AS feature, max(value) AS psi,
       toString(argMax(verdict, value)) AS verdict
FROM {db:Identifier}.drift_scores FINAL
WHERE metric = 'psi' AND (model, model_version, window_start) IN (
    SELECT model, model_version, max(window_start) FROM {db:Identifier}.drift_scores
    WHERE metric = 'psi' GROUP BY model, model_version)
GROUP BY model, model_version, window_start""", {"db": db})


def open_incidents(db: str) -> Query:
    """Incidents not resolved yet, counted per model, version and current severity."""
    return Query("""
SELECT model, model_version, severity, count() AS incidents
FROM (SELECT id, any(model) AS model, any(model_version) AS model_version,
             toString(argMax(severity, state)) AS severity, max(state) AS last_state
      FROM {db:Identifier}.alerts FINAL GROUP BY id)
WHERE last_state != 'resolved'
GROUP BY model, model_version, severity""", {"db": db})


def versions(db: str, model: str) -> Query:
    """The model's versions: first and last window, windows seen."""
    return Query("""
SELECT model_version, toUnixTimestamp64Milli(min(window_start)) AS first_window_ms,
       toUnixTimestamp64Milli(max(window_start)) AS last_window_ms,
       uniqExact(window_start) AS windows
FROM {db:Identifier}.feature_windows
WHERE model = {model:String}
GROUP BY model_version""", {"db": db, "model": model})


def features(db: str, model: str, version: str) -> Query:
    """The version's features (outputs and service measures included), by name."""
    return Query("""
SELECT DISTINCT feature FROM {db:Identifier}.feature_windows
WHERE model = {model:String} AND model_version = {version:String}
ORDER BY feature""", {"db": db, "model": model, "version": version})


def span_start(db: str, model: str, version: str, windows: int = MAX_WINDOWS) -> Query:
    """The start of the oldest of the version's latest ``windows`` windows."""
    return Query("""
SELECT toUnixTimestamp64Milli(min(window_start)) FROM (
    SELECT DISTINCT window_start FROM {db:Identifier}.feature_windows
    WHERE model = {model:String} AND model_version = {version:String}
    ORDER BY window_start DESC LIMIT {windows:UInt32})""",
                 {"db": db, "model": model, "version": version, "windows": windows})


def drift(db: str, model: str, version: str, since_ms: int) -> Query:
    """PSI per feature and window of the version."""
    return Query("""
SELECT feature, toUnixTimestamp64Milli(window_start) AS window_ms, value,
       toString(verdict) AS verdict
FROM {db:Identifier}.drift_scores FINAL
WHERE model = {model:String} AND model_version = {version:String} AND metric = 'psi'
  AND window_start >= fromUnixTimestamp64Milli({since:Int64})
ORDER BY feature, window_start""", _version(db, model, version, since=since_ms))


def feature_windows(db: str, model: str, version: str, feature: str, since_ms: int) -> Query:
    """The feature's windows and their PSI, if scored: to pick the one to draw."""
    return Query("""
SELECT toUnixTimestamp64Milli(w.window_start) AS window_ms, d.psi
FROM (SELECT DISTINCT window_start FROM {db:Identifier}.feature_windows
      WHERE model = {model:String} AND model_version = {version:String}
        AND feature = {feature:String}
        AND window_start >= fromUnixTimestamp64Milli({since:Int64})) AS w
LEFT JOIN (SELECT window_start, max(value) AS psi FROM {db:Identifier}.drift_scores FINAL
           WHERE model = {model:String} AND model_version = {version:String}
             AND feature = {feature:String} AND metric = 'psi'
           GROUP BY window_start) AS d ON d.window_start = w.window_start
ORDER BY window_ms
SETTINGS join_use_nulls = 1""", _version(db, model, version, feature=feature, since=since_ms))


def feature_window(db: str, model: str, version: str, feature: str, window_ms: int) -> Query:
    """One window of a feature: its histogram on the frozen edges, or its categories."""
    return Query("""
SELECT toString(kind) AS kind, toUnixTimestamp64Milli(window_end) AS window_end_ms, count,
       missing_count, bin_edges, bin_counts, categories, category_counts, other_count
FROM {db:Identifier}.feature_windows FINAL
WHERE model = {model:String} AND model_version = {version:String}
  AND feature = {feature:String} AND window_start = fromUnixTimestamp64Milli({window:Int64})""",
                 _version(db, model, version, feature=feature, window=window_ms))


def reference_feature(db: str, model: str, version: str, feature: str) -> Query:
    """The version's live reference: where it came from, and the feature's part as JSON."""
    return Query("""
SELECT toString(source) AS source, profile_id,
       toUnixTimestamp64Milli(published_at) AS published_ms,
       JSONExtractRaw(profile, 'features', {feature:String}) AS feature_json
FROM {db:Identifier}.references FINAL
WHERE model = {model:String} AND model_version = {version:String}""",
                 _version(db, model, version, feature=feature))


def quality(db: str, model: str, version: str, since_ms: int) -> Query:
    """Accuracy, label coverage and label delay p90 per window."""
    return Query("""
SELECT toUnixTimestamp64Milli(window_start) AS window_ms, accuracy, coverage,
       delay_p90_seconds, n_labeled, n_predicted
FROM {db:Identifier}.performance FINAL
WHERE model = {model:String} AND model_version = {version:String}
  AND window_start >= fromUnixTimestamp64Milli({since:Int64})
ORDER BY window_start""", _version(db, model, version, since=since_ms))


def service(db: str, model: str, version: str, since_ms: int) -> Query:
    """Requests, latency p95 and error rate per window."""
    return Query("""
SELECT toUnixTimestamp64Milli(window_start) AS window_ms, requests, latency_p95_ms,
       error_rate
FROM {db:Identifier}.service_windows FINAL
WHERE model = {model:String} AND model_version = {version:String}
  AND window_start >= fromUnixTimestamp64Milli({since:Int64})
ORDER BY window_start""", _version(db, model, version, since=since_ms))


def gpus(db: str, model: str, since_ms: int) -> Query:
    """Utilisation and temperature per window of each GPU that served the model."""
    return Query("""
SELECT host, gpu_index, toUnixTimestamp64Milli(window_start) AS window_ms,
       utilization_gpu_percent_mean, temperature_c_max, throttled_samples
FROM {db:Identifier}.gpu_windows FINAL
WHERE has(models, {model:String}) AND window_start >= fromUnixTimestamp64Milli({since:Int64})
ORDER BY host, gpu_index, window_start""", {"db": db, "model": model, "since": since_ms})


def gpu_hosts(db: str, model: str) -> Query:
    """The hosts whose GPUs served the model (their incidents belong on its timeline)."""
    return Query("""
SELECT DISTINCT host FROM {db:Identifier}.gpu_windows
WHERE has(models, {model:String}) ORDER BY host""", {"db": db, "model": model})


_ALERT_COLUMNS = """
SELECT id, dedup_key, toString(state) AS state, toString(severity) AS severity, model,
       model_version, feature, metric, value, threshold,
       toUnixTimestamp64Milli(window_start) AS window_start_ms,
       toUnixTimestamp64Milli(window_end) AS window_end_ms,
       toUnixTimestamp64Milli(first_seen) AS first_seen_ms,
       toUnixTimestamp64Milli(last_seen) AS last_seen_ms, summary
FROM {db:Identifier}.alerts FINAL
WHERE id IN (SELECT id FROM {db:Identifier}.alerts WHERE %s
             GROUP BY id ORDER BY min(first_seen) DESC LIMIT {incidents:UInt32})
ORDER BY first_seen, dedup_key, id, state"""
# The model's own incidents (its version's, and those that name no version, such as its
# service chain's), and those of the GPU hosts that served it.
_OF_MODEL = ("(model = {model:String} AND model_version IN ({version:String}, '')) "
             "OR (startsWith(dedup_key, 'infrastructure:') AND has({hosts:Array(String)}, model))")


def alerts(db: str, incidents: int = MAX_INCIDENTS) -> Query:
    """Every state change of the latest ``incidents`` incidents, oldest first."""
    return Query(_ALERT_COLUMNS % "1", {"db": db, "incidents": incidents})


def model_alerts(db: str, model: str, version: str, hosts: Sequence[str],
                 incidents: int = MAX_INCIDENTS) -> Query:
    """As :func:`alerts`, for one model version and the GPU hosts that served it."""
    return Query(_ALERT_COLUMNS % _OF_MODEL,
                 {"db": db, "model": model, "version": version, "hosts": list(hosts),
                  "incidents": incidents})


def _version(db: str, model: str, version: str, **more: Any) -> dict[str, Any]:
    return {"db": db, "model": model, "version": version, **more}
