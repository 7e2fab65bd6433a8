"""The demo's pipeline: OpenLineage run events every 3 minutes of simulated time that stop
8 minutes before the end, so the demo ends with that job overdue under its own rules."""

from __future__ import annotations

import orjson

from driftline.models.alerting.rules import RulesConfig
from driftline.models.lineage.events import decode_run_event
from driftline.models.lineage.pipelines import PipelinePartition
from driftline.streams.demo.pipelines import RULES, run_events
from driftline.streams.demo.traffic import TrafficPlan

W = 60_000
T0 = 1_764_230_400_000


def test_the_demo_pipeline_misses_its_last_run_and_its_rules_notice() -> None:
    plan = TrafficPlan(windows=14, start_ms=T0)
    events = [decode_run_event(orjson.dumps(e)) for e in run_events(plan)]
    starts = [e.event_time_ms for e in events if e.event_type == "START"]
    assert [(t - T0) // W for t in starts] == [0, 3, 6]  # those due at 9 and 12 never come
    partition = PipelinePartition(RulesConfig.from_toml(RULES), W, 10_000)
    result = partition.apply([*enumerate(events), (len(events), T0 + plan.windows * W)])
    assert [(a.dedup_key, a.state) for a in result.alerts] == [
        ("pipeline:airflow/fraud_features::run:missed_run_minutes", "open")]
    assert {r.state for r in result.runs} == {"RUNNING", "COMPLETE"}
