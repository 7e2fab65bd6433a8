"""Result rows to the JSON the pages draw: pure functions, no server needed to test them.

Times go out as UTC text Plotly reads as dates (``2025-11-27 08:07:00``); captions say
``08:07 UTC``. Each function takes the rows of its query in
:mod:`driftline.streams.ui.queries`, column for column.

>>> shape = heatmap([("amount", 0, 0.01, "ok"), ("amount", 60_000, 1.62, "critical"),
...                  ("age", 0, 0.02, "ok"), ("age", 60_000, 0.03, "ok")])
>>> shape["features"], shape["psi"]
(['age', 'amount'], [[0.02, 0.03], [0.01, 1.62]])
>>> shape["caption"]
'Most drifted: amount (PSI 1.62 at 00:01 UTC)'
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

__all__ = ["bin_labels", "clock_text", "fleet", "heatmap", "histogram", "incidents",
           "newest_first", "pick_window", "quality", "service", "utc_text", "version_key"]

Json = dict[str, Any]
_SEVERITY_RANK = {"warning": 1, "critical": 2}


def utc_text(ms: int) -> str:
    """``ms`` since the epoch as UTC text Plotly reads as a date.

    >>> utc_text(1764236160000)
    '2025-11-27 09:36:00'
    """
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def clock_text(ms: int) -> str:
    """``ms`` since the epoch as ``HH:MM UTC``, for captions."""
    return time.strftime("%H:%M UTC", time.gmtime(ms / 1000))


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key of a version name with its numbers compared as numbers: v9 < v10.

    >>> sorted(["v10", "v9", "2026.11", "v2"], key=version_key)
    ['2026.11', 'v2', 'v9', 'v10']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"(\d+)", version) if part)


def newest_first(rows: Sequence[tuple[str, int, int, int]]) -> list[str]:
    """Version names, the one that started serving last first (of those that started
    together, the higher name), from :func:`~driftline.streams.ui.queries.versions` rows.

    >>> newest_first([("v1", 0, 90, 10), ("v2", 0, 90, 10), ("v0", -60, 90, 11)])
    ['v2', 'v1', 'v0']
    """
    ordered = sorted(rows, key=lambda row: (row[1], version_key(row[0])), reverse=True)
    return [row[0] for row in ordered]


def fleet(windows: Iterable[Sequence[Any]], drift: Iterable[Sequence[Any]],
          open_incidents: Iterable[Sequence[Any]], data_end_ms: int) -> Json:
    """The fleet: one entry per model version, with its open incidents and latest drift.

    An incident that names no version (a model's service chain) counts for each of the
    model's versions; those of hosts and pipelines are counted apart, in ``other_open``.
    """
    worst = {(m, v): {"feature": f, "psi": psi, "window": clock_text(ms), "verdict": verdict}
             for m, v, ms, f, psi, verdict in drift}
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for model, version, severity, n in open_incidents:
        by_severity = counts.setdefault((model, version), {})
        by_severity[severity] = by_severity.get(severity, 0) + int(n)
    entries = []
    for model, version, n_windows, first_ms, last_ms, events in windows:
        opened = {s: counts.get((model, version), {}).get(s, 0)
                  + counts.get((model, ""), {}).get(s, 0) for s in ("critical", "warning")}
        entries.append({"model": model, "version": version, "windows": int(n_windows),
                        "first_window": utc_text(first_ms), "last_window": utc_text(last_ms),
                        "events_last_hour": int(events), "open": opened,
                        "worst_drift": worst.get((model, version))})
    shown = {(e["model"], e["version"]) for e in entries} | {(e["model"], "") for e in entries}
    other = sum(n for key, by in counts.items() if key not in shown for n in by.values())
    entries.sort(key=lambda e: (e["model"], version_key(e["version"])))
    return {"data_end": utc_text(data_end_ms) if data_end_ms else None, "models": entries,
            "other_open": other}


def heatmap(rows: Iterable[Sequence[Any]]) -> Json:
    """PSI per feature (rows, by name) and window (columns), and the worst cell.

    ``rows``: (feature, window ms, PSI, verdict), from
    :func:`~driftline.streams.ui.queries.drift`.
    """
    cells = {(feature, ms): (float(value), verdict) for feature, ms, value, verdict in rows}
    features = sorted({feature for feature, _ in cells})
    window_ms = sorted({ms for _, ms in cells})
    psi: list[list[float | None]] = [[None] * len(window_ms) for _ in features]
    verdicts: list[list[str | None]] = [[None] * len(window_ms) for _ in features]
    row_of = {feature: i for i, feature in enumerate(features)}
    column_of = {ms: j for j, ms in enumerate(window_ms)}
    for (feature, ms), (value, verdict) in cells.items():
        psi[row_of[feature]][column_of[ms]] = _finite(value)
        verdicts[row_of[feature]][column_of[ms]] = verdict
    shape: Json = {"features": features, "windows": [utc_text(ms) for ms in window_ms],
                   "window_ms": window_ms, "psi": psi, "verdicts": verdicts, "worst": None,
                   "caption": "No drift scores yet."}
    scored = [(value, feature, ms) for (feature, ms), (value, _) in cells.items()
              if math.isfinite(value)]
    if scored:  # the highest PSI; of equal ones, the earliest
        value, feature, ms = max(scored, key=lambda cell: (cell[0], -cell[2], cell[1]))
        shape["worst"] = {"feature": feature, "psi": value, "window_ms": ms,
                          "window": utc_text(ms), "verdict": cells[(feature, ms)][1]}
        shape["caption"] = f"Most drifted: {feature} (PSI {value:.3g} at {clock_text(ms)})"
    return shape


def pick_window(rows: Sequence[tuple[int, float | None]], requested: int | None) -> int | None:
    """The window of a feature to draw: ``requested`` if the feature has it, else the one
    where its PSI was highest, else its latest. ``rows``: (window ms, PSI or None).

    >>> pick_window([(0, 0.1), (60, 1.5), (120, None)], None)
    60
    >>> pick_window([(0, None), (60, None)], None), pick_window([(0, 0.1)], 60)
    (60, None)
    """
    if requested is not None:
        return requested if any(ms == requested for ms, _ in rows) else None
    scored = [(psi, -ms) for ms, psi in rows if psi is not None and math.isfinite(psi)]
    if scored:
        return -max(scored)[1]
    return max((ms for ms, _ in rows), default=None)


def histogram(feature: str, window_ms: int, window: Sequence[Any] | None,
              reference: Sequence[Any] | None, psi: float | None) -> Json:
    """A window's shares of the reference's bins (or categories) next to the reference's.

    ``window``: a :func:`~driftline.streams.ui.queries.feature_window` row; ``reference``:
    a :func:`~driftline.streams.ui.queries.reference_feature` row, or None.
    """
    shape: Json = {"feature": feature, "window": utc_text(window_ms), "window_ms": window_ms,
                   "psi": _finite(psi) if psi is not None else None, "kind": None,
                   "labels": [], "window_shares": [], "reference_shares": None,
                   "window_values": 0, "reference_values": 0, "reference_source": None,
                   "note": ""}
    if window is None:
        shape["note"] = "no data for this window"
        return shape
    kind, _, _, _, edges, counts, categories, category_counts, other = window
    profile = _reference_profile(reference, feature)
    shape["kind"] = kind
    if reference is not None:
        shape["reference_source"] = reference[0]
    if kind == "categorical":
        _categorical(shape, dict(zip(categories, category_counts, strict=True)), int(other),
                     profile)
    else:
        _numeric(shape, list(edges), list(counts), profile)
    if profile is None and not shape["note"]:
        shape["note"] = ("no reference profile for this version yet" if reference is None
                         else f"the reference profile has no feature {feature!r}")
    shape["caption"] = _histogram_caption(shape)
    return shape


def _reference_profile(reference: Sequence[Any] | None, feature: str) -> Json | None:
    if reference is None or not reference[3]:
        return None
    profile = orjson.loads(reference[3])
    return profile if isinstance(profile, dict) else None


def _numeric(shape: Json, edges: list[float], counts: list[int], profile: Json | None) -> None:
    if not edges:
        shape["note"] = "this window was counted before the version had bin edges"
        return
    shape["labels"] = bin_labels(edges)
    shape["window_shares"], shape["window_values"] = _shares(counts)
    if profile is None or profile.get("kind") != "numeric":
        return
    if not _same_edges(edges, profile.get("edges", [])):
        shape["note"] = ("the window was binned on the edges of an earlier reference: "
                         "the live reference's bins differ")
        return
    shape["reference_shares"], shape["reference_values"] = _shares(profile["counts"])


def _categorical(shape: Json, window: dict[str, int], other: int,
                 profile: Json | None) -> None:
    if profile is None or profile.get("kind") != "categorical":
        labels = list(window)
        shape["labels"] = [*labels, "other"]
        shape["window_shares"], shape["window_values"] = _shares([*window.values(), other])
        return
    labels = list(profile["categories"])
    # A window category outside the reference's top ones, and the window's own rest, count
    # as the reference's rest: "other" is the same bucket on both sides.
    counts = [window.get(label, 0) for label in labels]
    counts.append(sum(window.values()) + other - sum(counts))
    shape["labels"] = [*labels, "other"]
    shape["window_shares"], shape["window_values"] = _shares(counts)
    shape["reference_shares"], shape["reference_values"] = _shares(
        [*profile["counts"], profile.get("other_count", 0)])


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Names of the bins of ``edges``: below the first edge, between edges, at or above the
    last; with as many digits as keep them apart.

    >>> bin_labels([0.0, 1.5, 10.0])
    ['< 0', '0 – 1.5', '1.5 – 10', '≥ 10']
    """
    for digits in range(3, 13):
        text = [f"{edge:.{digits}g}" for edge in edges]
        if len(set(text)) == len(text):
            break
    pairs = [f"{a} – {b}" for a, b in itertools.pairwise(text)]
    return [f"< {text[0]}", *pairs, f"≥ {text[-1]}"]


def _shares(counts: Sequence[int]) -> tuple[list[float], int]:
    total = int(sum(counts))
    return [int(c) / total if total else 0.0 for c in counts], total


def _same_edges(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
                                    for x, y in zip(a, b, strict=True))


def _histogram_caption(shape: Json) -> str:
    at = clock_text(shape["window_ms"])
    psi = "" if shape["psi"] is None else f" (PSI {shape['psi']:.3g})"
    against = (f" against its {shape['reference_source']} reference"
               if shape["reference_shares"] is not None else "")
    return f"{shape['feature']} in the window of {at}{psi}{against}"


def quality(rows: Iterable[Sequence[Any]]) -> Json:
    """Accuracy, label coverage and label delay p90 per window."""
    columns = list(zip(*rows, strict=True)) or [()] * 6
    ms, accuracy, coverage, delay, labeled, predicted = columns
    return {"windows": [utc_text(m) for m in ms], "accuracy": _finites(accuracy),
            "coverage": _finites(coverage), "delay_p90_seconds": _finites(delay),
            "n_labeled": list(labeled), "n_predicted": list(predicted)}


def service(service_rows: Iterable[Sequence[Any]], gpu_rows: Iterable[Sequence[Any]]) -> Json:
    """The service's latency p95 and error rate per window, and each of its GPUs'
    utilisation, temperature and throttled samples per window."""
    columns = list(zip(*service_rows, strict=True)) or [()] * 4
    ms, requests, p95, errors = columns
    gpus: dict[str, Json] = {}
    for host, index, window_ms, utilisation, temperature, throttled in gpu_rows:
        gpu = gpus.setdefault(f"{host} gpu{index}", {
            "name": f"{host} gpu{index}", "windows": [], "utilization": [],
            "temperature_max": [], "throttled": []})
        gpu["windows"].append(utc_text(window_ms))
        gpu["utilization"].append(_finite(utilisation))
        gpu["temperature_max"].append(_finite(temperature))
        gpu["throttled"].append(int(throttled))
    return {"service": {"windows": [utc_text(m) for m in ms], "requests": list(requests),
                        "latency_p95_ms": _finites(p95), "error_rate": _finites(errors)},
            "gpus": list(gpus.values())}


def incidents(rows: Iterable[Sequence[Any]], now_ms: int) -> Json:
    """Alert rows grouped into incidents, oldest first, each with its state changes.

    An incident's bar runs from its first bad window to the end of the window that
    resolved it, or to ``now_ms`` (the data's clock, not the wall's) while it is open. Its
    ``summary`` is that of its latest open or escalated state: what went wrong.
    """
    by_id: dict[str, Json] = {}
    for (incident_id, dedup_key, state, severity, model, version, feature, metric, value,
         threshold, window_start, window_end, first_seen, _, summary) in rows:
        incident = by_id.setdefault(incident_id, {
            "id": incident_id, "dedup_key": dedup_key, "category": dedup_key.split(":")[0],
            "model": model, "version": version, "feature": feature,
            "first_seen_ms": int(first_seen), "first_seen": utc_text(first_seen),
            "severity": severity, "events": []})
        if _SEVERITY_RANK.get(severity, 0) > _SEVERITY_RANK.get(incident["severity"], 0):
            incident["severity"] = severity
        incident.update(state=state, metric=metric, last_window_end_ms=int(window_end))
        if state != "resolved" or "summary" not in incident:
            incident["summary"] = summary  # what went wrong, not that it ended
        incident["events"].append({
            "state": state, "severity": severity, "metric": metric,
            "value": _finite(value), "threshold": _finite(threshold),
            "window_start": utc_text(window_start), "window_end": utc_text(window_end),
            "summary": summary})
    clock = max([now_ms, *(i["last_window_end_ms"] for i in by_id.values())])
    shaped = []
    for incident in by_id.values():
        resolved = incident["state"] == "resolved"
        resolved_at = incident.pop("last_window_end_ms")
        end_ms = resolved_at if resolved else clock
        shaped.append({**incident, "open": not resolved, "end_ms": end_ms,
                       "end": utc_text(end_ms),
                       "duration_ms": max(end_ms - incident["first_seen_ms"], 0)})
    shaped.sort(key=lambda i: (i["first_seen_ms"], i["dedup_key"], i["id"]))
    return {"now": utc_text(clock) if clock else None, "incidents": shaped}


def _finite(value: float | None) -> float | None:
    # JSON has no NaN or infinity: a value that is not a number is no value.
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _finites(values: Iterable[float | None]) -> list[float | None]:
    return [_finite(v) for v in values]
