"""The main job on the embedded default: real broker + real ClickHouse + worker + traffic.

``driftline demo`` starts everything with project code, from an empty database and worker
state (fresh.py), publishes synthetic traffic with a shift injected part-way, shows
progress, and ends (or on Ctrl-C) by printing where the results are and a few SQL queries
with their actual output.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
from aiokafka import AIOKafkaConsumer
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftline.models.alerting.alerts import Alert
from driftline.sinks.clickhouse_options import clickhouse_client_options
from driftline.streams.demo.fresh import start_fresh
from driftline.streams.demo.pipelines import MISSED_RUN, publish_runs
from driftline.streams.demo.pipelines import RULES as PIPELINE_RULES
from driftline.streams.demo.sources import send_demo
from driftline.streams.demo.traffic import MODELS, TrafficPlan
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings
from driftline.streams.ui import offer_after_demo
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

#: Six features, the model outputs (output.score, output.prediction) and the service's
#: measures (service.latency_ms, service.status).
FEATURES_PER_MODEL = 10


def run_demo(settings: Settings, plan: TrafficPlan, home: Path, console: Console,
             ui_port: int | None = None) -> int:
    home.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]driftline demo[/]: embedded broker + ClickHouse under {home}/")
    with EmbeddedStack(home / "embedded") as stack:
        settings = settings.replace(**stack.settings_overrides(),
                                    state_dir=str(home / "state"))
        if settings.rules_file is None:  # the demo pipeline's schedule
            rules = home / "demo-rules.toml"
            rules.write_text(PIPELINE_RULES, "utf-8")
            settings = settings.replace(rules_file=str(rules))
        console.print(f"  Kafka (tansu)  {settings.kafka_bootstrap}\n"
                      f"  ClickHouse     {settings.clickhouse_url}  "
                      f"database [bold]{settings.clickhouse_database}[/]")
        client = clickhouse_connect.get_client(**clickhouse_client_options(settings))
        _start_fresh(settings, client, home, console)
        asyncio.run(ensure_topics(settings))
        worker = WorkerProcess(settings, home / "worker.log").start()
        console.print(f"  worker         pid {worker.pid}, log {worker.log_path}")
        plan = _aligned(plan, settings)
        try:
            _publish_and_wait(settings, plan, client, worker, console)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping, then showing what has arrived[/]")
        finally:
            worker.stop()
        _show_results(settings, plan, client, console)
        client.close()
        if ui_port is not None:  # until Ctrl-C, while the embedded stack still runs
            offer_after_demo(settings, console, port=ui_port)
    return 0


def _start_fresh(settings: Settings, client: Client, home: Path, console: Console) -> None:
    # Before the worker starts, so that it neither reads nor resumes anything of a run
    # whose broker offsets are gone (see fresh.py).
    start_fresh(client, settings.clickhouse_database, Path(settings.state_dir),
                settings.label_retention_days)
    (home / "worker.log").unlink(missing_ok=True)
    console.print(f"  fresh start    database {settings.clickhouse_database}, "
                  f"{settings.state_dir}/ and the worker log emptied: the broker keeps "
                  f"nothing between runs, so an earlier run cannot be continued",
                  highlight=False)


def _aligned(plan: TrafficPlan, settings: Settings) -> TrafficPlan:
    now = int(time.time() * 1000)
    end = now - now % settings.window_ms
    return dataclasses.replace(plan, window_ms=settings.window_ms,
                               start_ms=end - plan.windows * settings.window_ms)


def _publish_and_wait(settings: Settings, plan: TrafficPlan, client: Client,
                      worker: WorkerProcess, console: Console) -> None:
    expected_rows = plan.windows * len(MODELS) * FEATURES_PER_MODEL
    with _progress(console) as progress:
        sent = progress.add_task("events published", total=plan.total_events)
        rows = progress.add_task("feature windows in ClickHouse", total=expected_rows)

        async def publish_then_wait() -> bool:
            await publish_runs(settings, plan)
            await send_demo(settings, plan, lambda n: progress.update(sent, completed=n))
            deadline = time.monotonic() + 120 + settings.idle_close_seconds
            missed = progress.add_task("the pipeline's missed run noticed", total=1)
            while time.monotonic() < deadline:
                done = await asyncio.to_thread(_window_rows, client, settings, plan)
                progress.update(rows, completed=done)
                # The pipeline's runs stopped: the worker notices once its partition has
                # been quiet for the idle close, a few seconds after the traffic.
                noticed = await asyncio.to_thread(_alerted, client, settings, MISSED_RUN)
                progress.update(missed, completed=noticed)
                if done >= expected_rows and noticed:
                    return True
                if not worker.is_running():
                    raise RuntimeError(f"the worker exited; its log ends with:\n"
                                       f"{worker.log_tail()}")
                await asyncio.sleep(0.5)
            return False

        async def run() -> bool:
            watcher = asyncio.create_task(_print_alerts(settings, console))
            try:
                arrived = await publish_then_wait()
                await asyncio.sleep(2 * settings.checkpoint_seconds)  # the last alerts
                return arrived
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

        if asyncio.run(run()):
            return
    console.print("[yellow]not every window arrived within the time limit; "
                  f"see {worker.log_path}[/]")


async def _print_alerts(settings: Settings, console: Console) -> None:
    """Print alerts as they arrive on the alerts topic, as any consumer would read them.

    The embedded broker starts empty, so reading from the beginning shows this run only.
    """
    consumer = AIOKafkaConsumer(settings.alerts_topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        async for record in consumer:
            alert = Alert.from_json(record.value or b"{}")
            colour = {"open": "red", "escalated": "red", "resolved": "green"}[alert.state]
            console.print(f"[{colour}]ALERT {alert.state.upper():<9}[/] "
                          f"[bold]{alert.severity}[/] {alert.summary}", highlight=False)
    finally:
        await consumer.stop()


@contextlib.contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        yield progress


def _window_rows(client: Client, settings: Settings, plan: TrafficPlan) -> int:
    result = client.query(
        f"SELECT count() FROM {settings.clickhouse_database}.feature_windows FINAL "
        "WHERE window_start >= fromUnixTimestamp64Milli({start:Int64})",
        parameters={"start": plan.start_ms})
    return int(result.result_rows[0][0])


def _alerted(client: Client, settings: Settings, dedup_key: str) -> int:
    db = settings.clickhouse_database
    if not client.query(f"EXISTS TABLE {db}.alerts").result_rows[0][0]:
        return 0
    return int(client.query(f"SELECT count() > 0 FROM {db}.alerts WHERE dedup_key = "
                            "{key:String}", parameters={"key": dedup_key}).result_rows[0][0])


def example_queries(database: str, start_ms: int) -> list[tuple[str, str]]:
    """(title, SQL) pairs the demo prints with their output; the README shows the same.

    Each run starts from an empty database, so every row is this run's, and the queries
    give the same answers when run again against ``driftline embedded``. Per-window ones
    start at the run's first window: the traffic's stragglers carry event times up to two
    windows earlier and leave a few rows of a handful of events there.
    """
    since = _utc(start_ms / 1000)
    return [
        ("A numeric feature per window: v2's amount shifts part-way, v1's does not",
         f"SELECT model_version, formatDateTime(window_start, '%H:%i') AS window, count,\n"
         f"       round(mean, 1) AS mean, round(p50, 1) AS median, round(p95, 1) AS p95\n"
         f"FROM {database}.feature_windows FINAL\n"
         f"WHERE model = 'fraud-detector' AND feature = 'amount'\n"
         f"  AND window_start >= '{since}'\n"
         f"ORDER BY model_version, window_start"),
        ("A categorical feature per window: top countries of v2",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window,\n"
         f"       arraySlice(categories, 1, 3) AS top3,\n"
         f"       arraySlice(category_counts, 1, 3) AS counts\n"
         f"FROM {database}.feature_windows FINAL\n"
         f"WHERE model = 'fraud-detector' AND model_version = 'v2' AND feature = 'country'\n"
         f"  AND window_start >= '{since}'\n"
         f"ORDER BY window_start"),
        ("Windows roll up in SQL: counts and histograms add bin by bin",
         f"SELECT model, model_version, sum(count) AS events,\n"
         f"       sum(missing_count) AS missing, sumForEach(bin_counts) AS histogram\n"
         f"FROM {database}.feature_windows FINAL\n"
         f"WHERE feature = 'items' AND window_start >= '{since}'\n"
         f"GROUP BY model, model_version ORDER BY model, model_version"),
        ("Drift against the version's baseline (its first windows): PSI per feature",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window,\n"
         f"       round(maxIf(value, feature = 'amount' AND metric = 'psi'), 3) AS amount,\n"
         f"       round(maxIf(value, feature = 'country' AND metric = 'psi'), 3) AS country,\n"
         f"       round(maxIf(value, feature = 'age' AND metric = 'psi'), 3) AS age,\n"
         f"       anyIf(verdict, feature = 'amount' AND metric = 'psi') AS amount_verdict\n"
         f"FROM {database}.drift_scores FINAL\n"
         f"WHERE model = 'fraud-detector' AND model_version = 'v2'\n"
         f"  AND window_start >= '{since}'\n"
         f"GROUP BY window_start ORDER BY window_start"),
        ("Alerts: one row per incident opened or resolved. v2's quality stays open: a window "
         "is judged once its labels have had time to arrive, and the demo's time ends before "
         "enough good windows are judged to resolve it",
         f"SELECT formatDateTime(window_end, '%H:%i') AS at, state, severity,\n"
         f"       model_version AS version, feature, metric, round(value, 3) AS value\n"
         f"FROM {database}.alerts FINAL\n"
         f"ORDER BY window_end, model, feature, state"),
        ("Model quality of v2 per window, from labels that came later: worse in the shift",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window, n_predicted,\n"
         f"       n_labeled, round(coverage, 2) AS coverage, round(accuracy, 3) AS accuracy,\n"
         f"       round(roc_auc, 3) AS auc, round(delay_p90_seconds) AS delay_p90_s\n"
         f"FROM {database}.performance FINAL\n"
         f"WHERE model = 'fraud-detector' AND model_version = 'v2'\n"
         f"  AND window_start >= '{since}'\n"
         f"ORDER BY window_start"),
        ("Business outcomes: completed purchases and revenue per prediction, per version",
         f"SELECT model_version, outcome, sum(n_predicted) AS predictions,\n"
         f"       round(sum(total) / sum(n_predicted), 3) AS per_prediction\n"
         f"FROM {database}.outcomes FINAL\n"
         f"WHERE model = 'fraud-detector' AND window_start >= '{since}'\n"
         f"GROUP BY model_version, outcome ORDER BY outcome, model_version"),
        ("Champion v1 against challenger v2 since both served, completed purchases per "
         "prediction: the interval and p-value hold at every window, and v2 falls behind "
         "once the shift starts",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window,\n"
         f"       round(against_mean, 3) AS v1, round(mean, 3) AS v2,\n"
         f"       round(difference_low, 3) AS low, round(difference_high, 3) AS high,\n"
         f"       round(p_value, 4) AS p, verdict\n"
         f"FROM {database}.outcome_comparisons FINAL\n"
         f"WHERE model = 'fraud-detector' AND against = 'champion'\n"
         f"  AND outcome = 'completed'\n"
         f"ORDER BY window_start"),
        ("The model, its service and its GPU side by side: churn-predictor's slow spell",
         side_by_side_sql(database, "churn-predictor", since)),
        ("Its service chain from OpenTelemetry spans: the feature store is the slow hop",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window, callee, calls,\n"
         f"       round(latency_p95_ms, 1) AS p95_ms, round(latency_p95_ratio, 2) AS ratio,\n"
         f"       round(error_rate, 3) AS errors\n"
         f"FROM {database}.service_calls FINAL\n"
         f"WHERE caller = 'churn-predictor' AND callee = 'feature-store'\n"
         f"  AND window_start >= '{since}'\n"
         f"ORDER BY window_start"),
        ("Data quality: churn-predictor's account_days goes missing in the slow spell",
         f"SELECT formatDateTime(window_start, '%H:%i') AS window,\n"
         f"       round(observed, 3) AS missing_share, round(expected, 3) AS baseline,\n"
         f"       affected AS missing, events, verdict\n"
         f"FROM {database}.data_quality FINAL\n"
         f"WHERE model = 'churn-predictor' AND check = 'missing_increase'\n"
         f"  AND feature = 'account_days' AND window_start >= '{since}'\n"
         f"ORDER BY window_start"),
        ("The pipeline that refreshes fraud-detector's features: runs every 3 minutes, until "
         "it stops (a missed-run alert)",
         f"SELECT job_name, formatDateTime(started_at, '%H:%i') AS started, state,\n"
         f"       round(duration_seconds) AS seconds, outputs\n"
         f"FROM {database}.pipeline_runs FINAL\n"
         f"ORDER BY started_at"),
        ("Late events and dead letters: counted, never silently dropped",
         f"SELECT (SELECT sum(late_events) FROM {database}.late_events FINAL) AS late_events,\n"
         f"       (SELECT count() FROM {database}.dead_letters FINAL) AS dead_letters"),
    ]


def side_by_side_sql(database: str, model: str, since: str) -> str:
    """Per window: the model's latency and errors, the GPUs it ran on, and its drift."""
    return (
        f"SELECT formatDateTime(s.window_start, '%H:%i') AS window,\n"
        f"       round(s.latency_p95_ms) AS p95_ms, round(s.error_rate, 3) AS errors,\n"
        f"       round(g.gpu_util) AS gpu_util, g.gpu_temp_max, g.throttled,\n"
        f"       round(d.worst_psi, 3) AS worst_psi, round(p.accuracy, 3) AS accuracy\n"
        f"FROM {database}.service_windows AS s FINAL\n"
        f"LEFT JOIN (SELECT window_start, avg(utilization_gpu_percent_mean) AS gpu_util,\n"
        f"                  max(temperature_c_max) AS gpu_temp_max,\n"
        f"                  sum(throttled_samples) AS throttled\n"
        f"           FROM {database}.gpu_windows FINAL WHERE has(models, '{model}')\n"
        f"           GROUP BY window_start) AS g ON g.window_start = s.window_start\n"
        f"LEFT JOIN (SELECT window_start, model_version, max(value) AS worst_psi\n"
        f"           FROM {database}.drift_scores FINAL\n"
        f"           WHERE model = '{model}' AND metric = 'psi'\n"
        f"           GROUP BY window_start, model_version) AS d\n"
        f"       ON d.window_start = s.window_start AND d.model_version = s.model_version\n"
        f"LEFT JOIN (SELECT window_start, model_version, accuracy\n"
        f"           FROM {database}.performance FINAL WHERE model = '{model}') AS p\n"
        f"       ON p.window_start = s.window_start AND p.model_version = s.model_version\n"
        f"WHERE s.model = '{model}' AND s.window_start >= '{since}'\n"
        f"ORDER BY s.window_start")


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _show_results(settings: Settings, plan: TrafficPlan, client: Client,
                  console: Console) -> None:
    database = settings.clickhouse_database
    console.print(f"\n[bold]Results[/] are in ClickHouse at {settings.clickhouse_url}, "
                  f"database [bold]{database}[/]: tables feature_windows, late_events, "
                  f"dead_letters, drift_scores, alerts, references, performance, "
                  f"labeled_predictions, service_windows, data_quality, outcomes, "
                  f"outcome_reports, outcome_comparisons, pipeline_runs, pipeline_windows, "
                  f"service_operations, service_calls, gpu_windows, host_windows. They "
                  f"stay until the next `driftline demo` starts afresh; `driftline embedded` "
                  f"serves them again for your own queries.\n")
    for title, sql in example_queries(database, plan.start_ms or 0):
        console.print(f"[bold]{title}[/]")
        console.print(sql, style="cyan", highlight=False)
        console.print(_table(client.query(sql)))
        console.print()


def _table(result: QueryResult) -> Table:
    # Every row, and every value whole: a cell too wide for the terminal wraps ("fold")
    # instead of ending in an ellipsis. Plain columns, as in the README, fit 80 characters.
    table = Table(box=None, pad_edge=False)
    for name in result.column_names:
        table.add_column(name, overflow="fold")
    for row in result.result_rows:
        table.add_row(*(str(v) for v in row))
    return table
