"""The HTML of each page: one shared layout and nav, tables and lists rendered here, and an
empty ``div.chart`` for each chart, whose ``data-api`` names the JSON ``ui.js`` draws.

Every value is escaped; links are built with :func:`urllib.parse.quote`.

>>> model_url("fraud detector", "v2", feature="amount")
'/model/fraud%20detector?version=v2&feature=amount'
>>> "&lt;script&gt;" in not_found("<script>", "driftline")
True
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["alerts_page", "fleet_page", "model_page", "model_url", "not_found"]

Json = dict[str, Any]


def model_url(model: str, version: str | None = None, **more: str | int | None) -> str:
    """The model page's URL, with its query string (parameters that are None left out)."""
    query = {"version": version, **more}
    kept = {k: str(v) for k, v in query.items() if v is not None}
    return f"/model/{quote(model, safe='')}" + (f"?{urlencode(kept)}" if kept else "")


def api_url(path: str, **query: str | int | None) -> str:
    kept = {k: str(v) for k, v in query.items() if v is not None}
    return f"/api/{path}" + (f"?{urlencode(kept)}" if kept else "")


def layout(title: str, body: str, database: str, *, page: str, charts: bool = False) -> str:
    """A whole page: head, nav, ``body`` as its main content, footer."""
    plotly = '<script src="/static/plotly.min.js" defer></script>\n' if charts else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · driftline</title>
<link rel="stylesheet" href="/static/ui.css">
{plotly}<script src="/static/ui.js" defer></script>
</head>
<body data-page="{page}">
<header><nav>
<a class="brand" href="/">driftline</a>
<a href="/"{_current(page == "fleet")}>Fleet</a>
<a href="/alerts"{_current(page == "alerts")}>Alerts</a>
<span class="where">ClickHouse database <code>{escape(database)}</code> · read-only ·
times in UTC</span>
</nav></header>
<main>
{body}
</main>
</body>
</html>
"""


def fleet_page(fleet: Json, database: str) -> str:
    """Every model version: windows, last window, recent events, open incidents, drift."""
    models = fleet["models"]
    if not models:
        body = ('<h1>Fleet</h1>\n<p class="empty">No data yet: no model has sent a closed '
                "window to this database.</p>")
        return layout("Fleet", body, database, page="fleet")
    rows = "\n".join(_fleet_row(entry) for entry in models)
    other = fleet["other_open"]
    hosts = (f'\n<p>{other} open incident{"s" * (other != 1)} of hosts and pipelines: see '
             '<a href="/alerts">alerts</a>.</p>' if other else "")
    body = f"""<h1>Fleet</h1>
<p>Newest data: {escape(fleet["data_end"] or "none")}. Events are those of the hour of data
before it.</p>
<table id="fleet" class="fleet" data-rows="{len(models)}">
<thead><tr><th>Model</th><th>Version</th><th>Windows</th><th>Last window</th>
<th>Events, last hour</th><th>Open incidents</th><th>Worst drift, latest window</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>{hosts}"""
    return layout("Fleet", body, database, page="fleet")


def _fleet_row(entry: Json) -> str:
    model, version = entry["model"], entry["version"]
    link = model_url(model, version)
    opened = " ".join(f'<span class="badge {s}">{n} {s}</span>'
                      for s, n in entry["open"].items() if n) or "none"
    worst = entry["worst_drift"]
    drift = ("not scored yet" if worst is None else
             f'<span class="verdict-{escape(worst["verdict"])}">{escape(worst["feature"])} '
             f'{worst["psi"]:.3g}</span> <small>PSI at {escape(worst["window"])}</small>')
    return (f'<tr data-model="{escape(model)}" data-version="{escape(version)}">'
            f'<td><a href="{escape(link)}">{escape(model)}</a></td>'
            f'<td><a href="{escape(link)}">{escape(version)}</a></td>'
            f'<td class="number">{entry["windows"]}</td><td>{escape(entry["last_window"])}</td>'
            f'<td class="number">{entry["events_last_hour"]:,}</td><td>{opened}</td>'
            f"<td>{drift}</td></tr>")


def model_page(model: str, version: str, versions: Sequence[str], features: Sequence[str],
               incidents: Json, database: str, *, feature: str | None = None,
               window_ms: int | None = None) -> str:
    """A model version: drift heatmap, a feature against its reference, quality, service
    and GPUs, its alerts. ``feature`` and ``window_ms``: the histogram's, if chosen."""
    version_links = " ".join(
        f'<a href="{escape(model_url(model, v))}"{_current(v == version)}>{escape(v)}</a>'
        for v in versions)
    feature_links = " ".join(
        f'<a href="{escape(model_url(model, version, feature=f))}" '
        f'data-feature="{escape(f)}"{_current(f == feature)}>{escape(f)}</a>'
        for f in features) or "no data yet"
    of = {"model": model, "version": version}
    body = f"""<h1>{escape(model)} <small>version {escape(version)}</small></h1>
<p class="versions">Versions: {version_links}</p>
<section>
<h2>Drift: PSI per feature and window</h2>
<p class="caption" id="drift-caption"></p>
<div id="drift-heatmap" class="chart" data-api="{escape(api_url("drift", **of))}"></div>
</section>
<section>
<h2>A feature against its reference</h2>
<p class="features">Features: {feature_links}</p>
<p class="caption" id="histogram-caption"></p>
<div id="histogram" class="chart"
     data-api="{escape(api_url("histogram", **of, feature=feature, window=window_ms))}"></div>
</section>
<section>
<h2>Quality, from delayed labels</h2>
<div id="quality" class="chart" data-api="{escape(api_url("quality", **of))}"></div>
</section>
<section>
<h2>The service and its GPUs, side by side</h2>
<div class="pair">
<div id="service" class="chart" data-api="{escape(api_url("service", **of))}"></div>
<div id="gpus" class="chart"></div>
</div>
</section>
<section>
<h2>Alerts</h2>
<p>Incidents of this version, of the model as a whole, and of the GPU hosts that served it.</p>
<div id="timeline" class="chart" data-api="{escape(api_url("alerts", **of))}"></div>
{incident_list(incidents["incidents"])}
</section>"""
    return layout(f"{model} {version}", body, database, page="model", charts=True)


def alerts_page(incidents: Json, database: str) -> str:
    """Every incident on a timeline, and each one's evidence."""
    shown = incidents["incidents"]
    still_open = sum(i["open"] for i in shown)
    count = (f"<p>{len(shown)} incident{'s' * (len(shown) != 1)}, {still_open} open; "
             f"newest data: {escape(incidents['now'] or 'none')}.</p>" if shown else "")
    body = f"""<h1>Alerts</h1>
{count}
<div id="timeline" class="chart" data-api="/api/alerts"></div>
{incident_list(shown)}"""
    return layout("Alerts", body, database, page="alerts", charts=True)


def incident_list(incidents: Sequence[Json]) -> str:
    """Each incident, newest first, with the evidence of each of its state changes."""
    if not incidents:
        return '<p class="empty">No alerts yet.</p>'
    items = "\n".join(_incident(i) for i in reversed(incidents))
    return f'<ol class="incidents">\n{items}\n</ol>'


def _incident(incident: Json) -> str:
    severity, state = escape(incident["severity"]), escape(incident["state"])
    until = "still open" if incident["open"] else escape(incident["end"])
    evidence = "\n".join(
        f'<tr class="state-{escape(e["state"])}"><td>{escape(e["state"])}</td>'
        f'<td>{escape(e["severity"])}</td><td>{escape(e["metric"])}</td>'
        f'<td class="number">{_number(e["value"])}</td>'
        f'<td class="number">{_number(e["threshold"])}</td>'
        f'<td>{escape(e["window_start"][:16])} – {escape(e["window_end"][11:16])}</td>'
        f'<td>{escape(e["summary"])}</td></tr>' for e in incident["events"])
    return f"""<li class="incident severity-{severity} state-{state}" data-dedup-key="{
        escape(incident["dedup_key"])}" data-state="{state}" data-severity="{severity}">
<p class="head"><span class="badge {severity}">{severity}</span> <span class="state">{state}</span>
<code>{escape(incident["dedup_key"])}</code>
<span class="when">{escape(incident["first_seen"])} → {until}</span></p>
<p class="summary">{escape(incident["summary"])}</p>
<table class="evidence">
<thead><tr><th>state</th><th>severity</th><th>metric</th><th>value</th><th>threshold</th>
<th>window</th><th>summary</th></tr></thead>
<tbody>
{evidence}
</tbody>
</table>
</li>"""


def not_found(message: str, database: str) -> str:
    body = (f'<h1>Not found</h1>\n<p>{escape(message)}</p>\n'
            '<p><a href="/">Back to the fleet</a></p>')
    return layout("Not found", body, database, page="not-found")


def _current(current: bool) -> str:
    return ' class="current" aria-current="page"' if current else ""


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"
