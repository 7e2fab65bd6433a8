"""Pipeline runs and SLAs from OpenLineage run events: a failed run, a run far longer than
the job's history, a run that never came, each one incident; decided from the log alone."""

from __future__ import annotations

from driftline.models.alerting.rules import RulesConfig
from driftline.models.lineage.events import RunEvent
from driftline.models.lineage.pipelines import PipelinePartition

M = 60_000
T0 = 1_764_230_400_000
RULES = RulesConfig.from_toml('[pipelines."airflow/hourly_*"]\nevery_minutes = 60\n'
                              'grace_minutes = 10\n')


def run(job: str, run_id: str, start: int, minutes: float, end: str = "COMPLETE",
        error: str | None = None) -> list[RunEvent]:
    def event(kind: str, t: int, err: str | None = None) -> RunEvent:
        return RunEvent(kind, t, "airflow", job, run_id, None, None, None, (),  # type: ignore[arg-type]
                        (("warehouse", "sales"),), err, "test")
    return [event("START", start), event(end, start + int(minutes * M), error)]


def feed(partition: PipelinePartition, items: list[RunEvent | int]) -> list[tuple[str, str, int]]:
    at = partition.applied_offset + 1
    result = partition.apply([(at + i, item) for i, item in enumerate(items)])
    return [(a.dedup_key, a.state, (a.window_start - T0) // M) for a in result.alerts]


def test_a_failed_run_opens_an_incident_that_the_next_good_run_resolves() -> None:
    p = PipelinePartition(RULES, M, 0)
    got = feed(p, [*run("daily_sales", "r1", T0, 5, "FAIL", "disk full"), T0 + 30 * M])
    assert got == [("pipeline:airflow/daily_sales::run:run_failed", "open", 5)]
    got = feed(p, [*run("daily_sales", "r2", T0 + 40 * M, 5), T0 + 60 * M])
    assert got == [("pipeline:airflow/daily_sales::run:run_failed", "resolved", 45)]


def test_a_run_much_longer_than_its_history_is_flagged() -> None:
    p = PipelinePartition(RULES, M, 0)
    items: list[RunEvent | int] = []
    for i in range(6):
        items += run("daily_sales", f"r{i}", T0 + i * 100 * M, 10)
    assert feed(p, [*items, T0 + 700 * M]) == []
    got = feed(p, [*run("daily_sales", "slow", T0 + 700 * M, 45), T0 + 800 * M])
    assert got == [("pipeline:airflow/daily_sales::run:run_duration_ratio", "open", 745)]


def test_a_missed_run_is_noticed_from_the_clock_and_resolved_by_a_start() -> None:
    p = PipelinePartition(RULES, M, 0)
    assert feed(p, [*run("hourly_load", "r1", T0, 5), T0 + 69 * M]) == []  # within grace
    got = feed(p, [T0 + 75 * M])  # a watermark: 60 + 10 minutes passed without a START
    assert got == [("pipeline:airflow/hourly_load::run:missed_run_minutes", "open", 74)]
    got = feed(p, [*run("hourly_load", "r2", T0 + 76 * M, 5), T0 + 90 * M])
    assert got[-1][:2] == ("pipeline:airflow/hourly_load::run:missed_run_minutes", "resolved")


def test_an_event_forwarded_twice_counts_once_and_a_checkpoint_resumes_exactly() -> None:
    events = run("daily_sales", "r1", T0, 5, "FAIL")
    p = PipelinePartition(RULES, M, 0)
    result = p.apply([(0, events[0]), (1, events[0]), (2, events[1]), (3, events[1])])
    assert [r.state for r in result.runs] == ["RUNNING", "FAIL"]
    saved = p.to_state()
    again = PipelinePartition.from_state(saved, RULES, M, 0)
    assert feed(again, [T0 + 30 * M]) == feed(p, [T0 + 30 * M])


def test_a_job_due_by_a_time_of_day_is_late_until_it_completes_that_day() -> None:
    rules = RulesConfig.from_toml('[pipelines."airflow/nightly_*"]\ndue_by = "09:00"\n')
    p = PipelinePartition(rules, M, 0)
    day = 24 * 60 * M  # T0 is 08:00 UTC
    assert feed(p, [*run("nightly_features", "yesterday", T0 - day, 30), T0 + 59 * M]) == []
    got = feed(p, [T0 + 63 * M])  # 09:03, and nothing completed today
    assert got == [("pipeline:airflow/nightly_features::run:missed_run_minutes", "open", 62)]
    got = feed(p, [*run("nightly_features", "today", T0 + 64 * M, 5), T0 + 80 * M])
    assert got[-1][:2] == ("pipeline:airflow/nightly_features::run:missed_run_minutes",
                           "resolved")


def test_schedules_are_checked_with_one_line_errors() -> None:
    import pytest

    from driftline.models.alerting.rules import RulesError
    for bad in ('due_by = "25:00"', "every_minutes = 0", 'grace_minutes = "5"', "cron = 1"):
        with pytest.raises(RulesError):
            RulesConfig.from_toml(f'[pipelines."a/*"]\n{bad}\n')


def test_a_dataset_not_written_for_too_long_names_the_models_that_read_it() -> None:
    rules = RulesConfig.from_toml('[datasets."warehouse/*"]\nmax_age_minutes = 60\n'
                                  'models = ["fraud-detector", "churn"]\n')
    p = PipelinePartition(rules, M, 0)
    assert feed(p, [*run("daily_sales", "r1", T0, 5), T0 + 64 * M]) == []  # written at 5
    p2_alerts = p.apply([(p.applied_offset + 1, T0 + 70 * M)]).alerts
    assert [(a.dedup_key, a.state) for a in p2_alerts] == [
        ("pipeline:warehouse/sales::dataset:stale_dataset_minutes", "open")]
    assert "read by fraud-detector, churn" in p2_alerts[0].summary
    got = feed(p, [*run("daily_sales", "r2", T0 + 71 * M, 2), T0 + 80 * M])
    assert got[-1][:2] == ("pipeline:warehouse/sales::dataset:stale_dataset_minutes",
                           "resolved")
