"""The worker's Prometheus exposition: counters summed from their sources, dead letters by
reason class, open incidents per category and severity, histograms."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from driftline.models.alerting.evaluation import Score, evaluate_window
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.streams.worker.metrics import WorkerMetrics


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_are_summed_per_label_set_from_every_source() -> None:
    metrics = WorkerMetrics()
    metrics.add_source(lambda: [("driftline_events_total", {"kind": "prediction"}, 10),
                                ("driftline_messages_total", {"topic": "predictions"}, 2)])
    metrics.add_source(lambda: [("driftline_events_total", {"kind": "prediction"}, 5),
                                ("driftline_events_total", {"kind": "label"}, 7)])
    got = samples(metrics)
    assert got[("driftline_events_total", (("kind", "prediction"),))] == 15
    assert got[("driftline_events_total", (("kind", "label"),))] == 7
    assert got[("driftline_messages_total", (("topic", "predictions"),))] == 2


def test_a_failing_source_leaves_the_others_in_the_scrape() -> None:
    metrics = WorkerMetrics()

    def broken() -> list[tuple[str, dict[str, str], float]]:
        raise RuntimeError("boom")

    metrics.add_source(broken)
    metrics.add_source(lambda: [("driftline_events_total", {"kind": "label"}, 3)])
    assert samples(metrics)[("driftline_events_total", (("kind", "label"),))] == 3


def test_dead_letters_by_topic_and_reason_class() -> None:
    metrics = WorkerMetrics()
    metrics.dead_letter("driftline.predictions", "not valid JSON: unexpected character")
    metrics.dead_letter("driftline.predictions", "not valid JSON: trailing comma")
    metrics.dead_letter("driftline.labels", "message is 9 bytes, over the 8-byte limit")
    got = samples(metrics)
    assert got[("driftline_dead_letters_total",
                (("reason", "not_json"), ("topic", "driftline.predictions")))] == 2
    assert got[("driftline_dead_letters_total",
                (("reason", "oversize"), ("topic", "driftline.labels")))] == 1


def test_open_incidents_come_from_the_live_trackers() -> None:
    rules = RulesConfig.default()
    tracker = IncidentTracker(open_after=1, resolve_after=1, cooldown_windows=0)
    metrics = WorkerMetrics()
    before = samples(metrics).get(
        ("driftline_open_incidents", (("category", "drift"), ("severity", "critical"))), 0)
    score = Score("m-metrics", "1", "amount", "psi", 0.4, None, 1000, 1000)
    tracker.update(evaluate_window(rules, "m-metrics", "1", 0, 60_000, [score], 5))
    key = ("driftline_open_incidents", (("category", "drift"), ("severity", "critical")))
    assert samples(metrics)[key] == before + 1
    good = Score("m-metrics", "1", "amount", "psi", 0.01, None, 1000, 1000)
    tracker.update(evaluate_window(rules, "m-metrics", "1", 60_000, 120_000, [good], 6))
    assert samples(metrics).get(key, 0) == before
    del tracker


def test_histograms_are_in_seconds() -> None:
    metrics = WorkerMetrics()
    metrics.checkpoint_seconds.labels(processor="feature_windows").observe(0.02)
    metrics.clickhouse_write_seconds.observe(0.3)
    got = samples(metrics)
    assert got[("driftline_checkpoint_seconds_count",
                (("processor", "feature_windows"),))] == 1
    assert got[("driftline_clickhouse_write_seconds_bucket", (("le", "0.5"),))] == 1
