"""Every Grafana panel's SQL, as Grafana would send it (macros and variables filled in),
returns rows from the embedded ClickHouse holding the demo's data: a dashboard that
breaks silently when a table changes is worse than none. And every metric a Prometheus
panel names is one the worker or the agent exposes."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from stranger import http_rows

from driftline.streams.agent.agent import AgentStats
from driftline.streams.agent.metrics import agent_registry
from driftline.streams.settings import Settings
from driftline.streams.worker.metrics import COUNTERS, GAUGES, WorkerMetrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
#: The values the demo's data has for the model dashboard's variables: the churn model has
#: drift scores, labels, a service, GPUs and alerts.
VARIABLES = {"model": "churn-predictor", "version": "2026.11", "feature": "account_days"}


def panels() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path.stem, panel["title"], target)
            for path in DASHBOARDS for panel in json.loads(path.read_text())["panels"]
            for target in panel["targets"]]


def as_sent(raw: str, db: str) -> str:
    """The panel's SQL as Grafana's ClickHouse plugin sends it, over all time."""
    start = "toDateTime64('2020-01-01 00:00:00', 3)"
    end = "toDateTime64('2100-01-01 00:00:00', 3)"
    sent = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= {start} AND \1 <= {end}", raw)
    for name, value in VARIABLES.items():
        sent = sent.replace(f"${{{name}}}", value)
    assert "$" not in sent, f"an unknown macro or variable in: {sent}"
    return sent.replace("driftline.", f"{db}.")


@pytest.mark.parametrize(("board", "title", "target"),
                         [p for p in panels() if p[2]["datasource"]["uid"] == "clickhouse"],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_clickhouse_panel_returns_rows(demo_data: Settings, board: str, title: str,
                                             target: dict[str, Any]) -> None:
    rows = http_rows(demo_data, as_sent(target["rawSql"], demo_data.clickhouse_database))
    assert rows, f"{board}: {title!r} returned no rows"
    if target["format"] == 0:  # a time series: a time column first
        first = next(iter(rows[0]))
        assert first == "time"
        datetime.datetime.fromisoformat(rows[0][first])


def test_every_variable_query_returns_the_values_used(demo_data: Settings) -> None:
    board = json.loads((ROOT / "deploy/grafana/dashboards/model.json").read_text())
    for variable in board["templating"]["list"]:
        values = [next(iter(r.values())) for r in http_rows(
            demo_data, as_sent(variable["query"], demo_data.clickhouse_database))]
        assert VARIABLES[variable["name"]] in values


def test_every_prometheus_panel_names_exposed_metrics() -> None:
    agent = SimpleNamespace(stats=AgentStats(), config=SimpleNamespace(host="h"), buffered=0)
    metrics = WorkerMetrics()
    metrics.checkpoint_seconds.labels(processor="feature_windows").observe(0.1)
    metrics.clickhouse_write_seconds.observe(0.1)
    metrics.dead_letter("t", "not valid JSON")
    exposed = {*COUNTERS, *GAUGES,
               *(m.name for m in metrics.registry.collect()),  # a gauge with no sample yet
               *(s.name for m in metrics.registry.collect() for s in m.samples),
               *(s.name for m in agent_registry(agent).collect()  # type: ignore[arg-type]
                 for s in m.samples)}
    used = {name for _, _, target in panels() if "expr" in target
            for name in re.findall(r"\bdriftline_\w+", target["expr"])}
    assert used and used <= exposed, used - exposed
