"""The web UI's pure parts: what it asks ClickHouse, what it makes of the rows, its HTML.

No servers: queries are checked as text (SELECTs only, every value a bound parameter),
shaping and pages on hand-written rows shaped as the queries return them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from driftline.streams.ui import pages, queries, shaping
from driftline.streams.ui.queries import PLACEHOLDER, Query

#: A name an attacker would send: quotes, comment, statement separator, markup.
HOSTILE = "x'); DROP TABLE alerts; -- <script>alert(1)</script>"
MINUTE = 60_000
T0 = 1_764_230_400_000  # 2025-11-27 08:00 UTC


def every_query(name: str) -> list[Query]:
    """Each query builder, called with ``name`` for every name it takes."""
    built = []
    for builder in (getattr(queries, n) for n in dir(queries) if not n.startswith("_")):
        if not inspect.isfunction(builder) or builder.__module__ != queries.__name__:
            continue
        if builder is queries.valid_name:
            continue
        arguments: dict[str, Any] = {}
        for parameter in inspect.signature(builder).parameters.values():
            if parameter.default is not inspect.Parameter.empty:
                continue
            kind = {"hosts": [name], "since_ms": 0, "window_ms": T0}.get(parameter.name, name)
            arguments[parameter.name] = kind
        built.append(builder(**arguments))
    return built


def test_every_query_is_found() -> None:
    assert len(every_query("m")) == 17


@pytest.mark.parametrize("query", every_query(HOSTILE), ids=lambda q: q.sql.split()[1][:20])
def test_every_query_is_a_select_with_every_value_bound(query: Query) -> None:
    assert query.sql.split()[0] in ("SELECT", "WITH")
    assert HOSTILE not in query.sql and "DROP" not in query.sql
    assert {name for name, _ in PLACEHOLDER.findall(query.sql)} == set(query.parameters)
    # The database is an identifier parameter wherever a table is named.
    assert "{db:Identifier}." in query.sql
    assert all(f"{{db:Identifier}}.{table}" in query.sql
               for table in ("feature_windows", "drift_scores", "alerts", "references",
                             "performance", "service_windows", "gpu_windows")
               if f".{table}" in query.sql)
    for word in ("INSERT", "ALTER", "CREATE", "DELETE", "TRUNCATE", "OPTIMIZE", "SYSTEM "):
        assert word not in query.sql.upper()


def test_a_query_that_is_not_a_select_or_leaves_a_value_unbound_is_refused() -> None:
    with pytest.raises(ValueError, match="only reads"):
        Query("INSERT INTO t VALUES (1)", {})
    with pytest.raises(ValueError, match="placeholders"):
        Query("SELECT {a:String}", {"a": "x", "b": "y"})


@pytest.mark.parametrize(("name", "valid"), [
    ("fraud-detector", True), ("2026.11", True), ("output.score", True), ("ünïcode ok", True),
    ("", False), ("x" * 257, False), ("tab\there", False), ("nul\0", False), ("del\x7f", False)])
def test_names_from_urls(name: str, valid: bool) -> None:
    assert queries.valid_name(name) is valid


def test_model_alerts_take_the_hosts_as_an_array() -> None:
    query = queries.model_alerts("db", "churn", "v1", ("gpu-node-02",))
    assert query.parameters["hosts"] == ["gpu-node-02"]
    assert "{hosts:Array(String)}" in query.sql


# -- shaping --------------------------------------------------------------------------


def drift_rows() -> list[tuple[str, int, float, str]]:
    rows = []
    for i in range(4):
        rows.append(("age", T0 + i * MINUTE, 0.01 * i, "ok"))
        rows.append(("amount", T0 + i * MINUTE, [0.02, 1.62, 1.62, 0.01][i],
                     ["ok", "critical", "critical", "ok"][i]))
    rows.append(("country", T0 + 3 * MINUTE, 0.3, "warning"))  # scored in one window only
    return rows


def test_the_heatmap_has_a_row_per_feature_and_names_the_worst_cell() -> None:
    shape = shaping.heatmap(drift_rows())
    assert shape["features"] == ["age", "amount", "country"]
    assert shape["windows"][0] == "2025-11-27 08:00:00" and len(shape["windows"]) == 4
    assert shape["psi"][2] == [None, None, None, 0.3]
    # Of two equal worst values, the earlier window.
    assert shape["worst"] == {"feature": "amount", "psi": 1.62, "window_ms": T0 + MINUTE,
                              "window": "2025-11-27 08:01:00", "verdict": "critical"}
    assert shape["caption"] == "Most drifted: amount (PSI 1.62 at 08:01 UTC)"
    assert shape["verdicts"][1][1] == "critical"


def test_an_empty_heatmap_says_so() -> None:
    shape = shaping.heatmap([])
    assert shape["features"] == [] and shape["worst"] is None
    assert shape["caption"] == "No drift scores yet."


def test_the_histogram_window_is_the_asked_one_else_the_most_drifted_else_the_latest() -> None:
    rows = [(T0, None), (T0 + MINUTE, 0.4), (T0 + 2 * MINUTE, 1.1), (T0 + 3 * MINUTE, 0.1)]
    assert shaping.pick_window(rows, None) == T0 + 2 * MINUTE
    assert shaping.pick_window(rows, T0) == T0
    assert shaping.pick_window(rows, T0 + 99) is None
    assert shaping.pick_window([(T0, None), (T0 + MINUTE, None)], None) == T0 + MINUTE
    assert shaping.pick_window([], None) is None


EDGES = [0.0, 10.0, 20.0]


def numeric_window(edges: list[float] = EDGES) -> tuple[Any, ...]:
    return ("numeric", T0 + MINUTE, 110, 10, edges, [0, 20, 30, 50], [], [], 0)


def reference_row(feature: dict[str, Any] | None) -> tuple[Any, ...]:
    return ("baseline", "abc", T0, orjson.dumps(feature).decode() if feature else "")


def test_a_numeric_histogram_puts_window_and_reference_shares_on_the_same_bins() -> None:
    reference = {"kind": "numeric", "edges": EDGES, "counts": [0, 50, 50, 0]}
    shape = shaping.histogram("amount", T0, numeric_window(), reference_row(reference), 1.62)
    assert shape["labels"] == ["< 0", "0 – 10", "10 – 20", "≥ 20"]
    assert shape["window_shares"] == [0.0, 0.2, 0.3, 0.5] and shape["window_values"] == 100
    assert shape["reference_shares"] == [0.0, 0.5, 0.5, 0.0]
    assert shape["reference_values"] == 100 and shape["reference_source"] == "baseline"
    assert shape["caption"] == ("amount in the window of 08:00 UTC (PSI 1.62) against its "
                                "baseline reference")
    assert shape["note"] == ""


def test_a_histogram_on_other_edges_than_the_live_reference_shows_the_window_alone() -> None:
    reference = {"kind": "numeric", "edges": [0.0, 5.0, 20.0], "counts": [0, 50, 50, 0]}
    shape = shaping.histogram("amount", T0, numeric_window(), reference_row(reference), None)
    assert shape["reference_shares"] is None and "earlier reference" in shape["note"]
    assert shape["window_shares"] == [0.0, 0.2, 0.3, 0.5]


def test_a_histogram_without_a_reference_or_edges_says_why() -> None:
    alone = shaping.histogram("amount", T0, numeric_window(), None, None)
    assert alone["reference_shares"] is None
    assert alone["note"] == "no reference profile for this version yet"
    missing = shaping.histogram("amount", T0, numeric_window(), reference_row(None), None)
    assert missing["note"] == "the reference profile has no feature 'amount'"
    unbinned = shaping.histogram("amount", T0, numeric_window([]), None, None)
    assert unbinned["labels"] == [] and "bin edges" in unbinned["note"]
    nothing = shaping.histogram("amount", T0, None, None, None)
    assert nothing["labels"] == [] and nothing["note"] == "no data for this window"


def test_a_categorical_histogram_uses_the_reference_categories_and_one_other_bucket() -> None:
    window = ("categorical", T0 + MINUTE, 100, 0, [], [], ["NG", "DE", "XX"], [50, 30, 10], 10)
    reference = {"kind": "categorical", "categories": ["DE", "US", "NG"],
                 "counts": [60, 30, 5], "other_count": 5}
    shape = shaping.histogram("country", T0, window, reference_row(reference), 1.07)
    assert shape["labels"] == ["DE", "US", "NG", "other"]
    # XX (not a reference category) and the window's own rest go to "other".
    assert shape["window_shares"] == [0.3, 0.0, 0.5, 0.2]
    assert shape["reference_shares"] == [0.6, 0.3, 0.05, 0.05]


def test_bin_labels_get_the_digits_that_keep_them_apart() -> None:
    labels = shaping.bin_labels([1.0001, 1.0002, 1.5])
    assert len(set(labels)) == 4 and labels[1] == "1.0001 – 1.0002"


def fleet_rows() -> tuple[list[Any], list[Any], list[Any]]:
    windows = [("fraud-detector", "v2", 14, T0, T0 + 13 * MINUTE, 29_343),
               ("churn-predictor", "2026.11", 14, T0, T0 + 13 * MINUTE, 25_152),
               ("fraud-detector", "v10", 3, T0, T0 + 2 * MINUTE, 10)]
    drift = [("fraud-detector", "v2", T0 + 13 * MINUTE, "amount", 0.0116, "ok")]
    opened = [("fraud-detector", "v2", "critical", 1), ("fraud-detector", "v2", "warning", 2),
              ("churn-predictor", "", "critical", 1),  # its service chain: no version
              ("gpu-node-02", "", "critical", 2), ("airflow/job", "", "warning", 1)]
    return windows, drift, opened


def test_the_fleet_lists_every_version_with_its_incidents_and_latest_drift() -> None:
    windows, drift, opened = fleet_rows()
    fleet = shaping.fleet(windows, drift, opened, T0 + 14 * MINUTE)
    assert [(e["model"], e["version"]) for e in fleet["models"]] == [
        ("churn-predictor", "2026.11"), ("fraud-detector", "v2"), ("fraud-detector", "v10")]
    by_version = {e["version"]: e for e in fleet["models"]}
    assert by_version["v2"]["open"] == {"critical": 1, "warning": 2}
    assert by_version["2026.11"]["open"] == {"critical": 1, "warning": 0}
    assert by_version["v10"]["open"] == {"critical": 0, "warning": 0}
    assert by_version["v2"]["worst_drift"] == {"feature": "amount", "psi": 0.0116,
                                               "window": "08:13 UTC", "verdict": "ok"}
    assert by_version["v10"]["worst_drift"] is None
    assert by_version["v2"]["events_last_hour"] == 29_343
    assert fleet["other_open"] == 3 and fleet["data_end"] == "2025-11-27 08:14:00"


def test_an_empty_fleet() -> None:
    assert shaping.fleet([], [], [], 0) == {"data_end": None, "models": [], "other_open": 0}


def alert_row(incident: str, key: str, state: str, severity: str, window: int,
              first: int = 0, summary: str = "") -> tuple[Any, ...]:
    return (incident, key, state, severity, "churn", "v1", "latency", "latency_p95_ratio",
            2.9, 2.0, T0 + window * MINUTE, T0 + (window + 1) * MINUTE, T0 + first * MINUTE,
            T0 + (window + 1) * MINUTE, summary or f"{key} {state}")


def test_alert_rows_become_incidents_with_their_evidence() -> None:
    rows = [alert_row("a", "service:churn:v1:latency", "open", "warning", 1, 0, "slow"),
            alert_row("a", "service:churn:v1:latency", "escalated", "critical", 2, 0, "slower"),
            alert_row("a", "service:churn:v1:latency", "resolved", "critical", 6, 0, "back"),
            alert_row("b", "performance:churn:v1:quality", "open", "critical", 4, 3)]
    shaped = shaping.incidents(rows, T0 + 10 * MINUTE)
    first, second = shaped["incidents"]
    assert first["dedup_key"] == "service:churn:v1:latency" and first["category"] == "service"
    assert (first["state"], first["severity"], first["open"]) == ("resolved", "critical", False)
    assert first["summary"] == "slower"  # what went wrong, not that it ended
    assert first["end"] == "2025-11-27 08:07:00"
    assert first["duration_ms"] == 7 * MINUTE
    assert [e["state"] for e in first["events"]] == ["open", "escalated", "resolved"]
    assert first["events"][0] == {
        "state": "open", "severity": "warning", "metric": "latency_p95_ratio", "value": 2.9,
        "threshold": 2.0, "window_start": "2025-11-27 08:01:00",
        "window_end": "2025-11-27 08:02:00", "summary": "slow"}
    # Open: to the data's clock.
    assert second["open"] and second["end"] == "2025-11-27 08:10:00"
    assert second["duration_ms"] == 7 * MINUTE
    assert shaped["now"] == "2025-11-27 08:10:00"


def test_no_alerts() -> None:
    assert shaping.incidents([], 0) == {"now": None, "incidents": []}


def test_quality_and_service_columns_with_gaps() -> None:
    quality = shaping.quality([(T0, 0.94, 0.85, 110.0, 1792, 2097),
                               (T0 + MINUTE, None, float("nan"), None, 0, 2000)])
    assert quality["accuracy"] == [0.94, None] and quality["coverage"] == [0.85, None]
    assert quality["windows"] == ["2025-11-27 08:00:00", "2025-11-27 08:01:00"]
    assert shaping.quality([])["windows"] == []
    service = shaping.service([(T0, 1796, 39.2, 0.001)],
                              [("gpu-node-02", 0, T0, 64.2, 73.0, 0),
                               ("gpu-node-02", 1, T0, 99.0, 91.0, 24),
                               ("gpu-node-02", 0, T0 + MINUTE, 58.0, 73.0, 0)])
    assert service["service"]["latency_p95_ms"] == [39.2]
    assert [(g["name"], len(g["windows"])) for g in service["gpus"]] == [
        ("gpu-node-02 gpu0", 2), ("gpu-node-02 gpu1", 1)]
    assert service["gpus"][1]["throttled"] == [24]
    assert shaping.service([], []) == {"service": {"windows": [], "requests": [],
                                                   "latency_p95_ms": [], "error_rate": []},
                                       "gpus": []}


def test_the_newest_version_is_the_one_that_started_last() -> None:
    assert shaping.newest_first([("v9", T0, T0, 1), ("v10", T0, T0, 1)]) == ["v10", "v9"]
    assert shaping.newest_first([("b", T0 + MINUTE, T0, 1), ("c", T0, T0, 1)]) == ["b", "c"]
    assert shaping.newest_first([]) == []


# -- pages ------------------------------------------------------------------------


def incident(key: str, summary: str) -> dict[str, Any]:
    rows = [alert_row("i", key, "open", "critical", 1, 0, summary)]
    return shaping.incidents(rows, T0 + 5 * MINUTE)


def test_pages_escape_every_name() -> None:
    windows = [(HOSTILE, HOSTILE, 1, T0, T0, 5)]
    html = pages.fleet_page(shaping.fleet(windows, [], [], T0), HOSTILE)
    html += pages.model_page(HOSTILE, HOSTILE, [HOSTILE], [HOSTILE],
                             incident(HOSTILE, HOSTILE), HOSTILE, feature=HOSTILE)
    html += pages.alerts_page(incident(HOSTILE, HOSTILE), HOSTILE)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_each_incident_carries_its_dedup_key_and_evidence() -> None:
    html = pages.alerts_page(incident("service:churn:v1:latency", "slow: hop to feature-store"),
                             "driftline")
    assert 'data-dedup-key="service:churn:v1:latency"' in html
    assert 'data-state="open"' in html and "slow: hop to feature-store" in html
    assert '<td class="number">2.9</td><td class="number">2</td>' in html
    assert '<div id="timeline" class="chart" data-api="/api/alerts"></div>' in html


def test_the_model_page_names_its_charts_json() -> None:
    html = pages.model_page("fraud detector", "v2", ["v2", "v1"], ["amount", "age"],
                            {"now": None, "incidents": []}, "driftline", feature="age",
                            window_ms=T0)
    for api in ("/api/drift?model=fraud+detector&amp;version=v2",
                "/api/histogram?model=fraud+detector&amp;version=v2&amp;feature=age&amp;"
                f"window={T0}",
                "/api/quality?", "/api/service?", "/api/alerts?model=fraud+detector"):
        assert api in html, api
    assert 'href="/model/fraud%20detector?version=v1"' in html
    assert "No alerts yet." in html and '<script src="/static/plotly.min.js" defer>' in html


def test_empty_pages_say_no_data_yet() -> None:
    assert "No data yet" in pages.fleet_page(shaping.fleet([], [], [], 0), "driftline")
    assert "No alerts yet." in pages.alerts_page(shaping.incidents([], 0), "driftline")


@pytest.mark.parametrize("render", [
    lambda: pages.fleet_page(shaping.fleet(*fleet_rows(), T0), "d"),
    lambda: pages.alerts_page(incident("k", "s"), "d"),
    lambda: pages.not_found("gone", "d"),
])
def test_every_page_has_the_layout_and_nav(render: Callable[[], str]) -> None:
    html = render()
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert '<a href="/alerts"' in html and '<link rel="stylesheet" href="/static/ui.css">' in html
    assert "<form" not in html  # nothing to post
