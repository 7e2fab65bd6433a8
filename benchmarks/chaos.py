"""Chaos suite: real ``driftline worker`` processes on the embedded broker and ClickHouse,
hit with crashes and outages while predictions, labels, telemetry and traces flow, then
checked cell by cell against what was sent.

Experiments (each in fresh topics, database and consumer group):

* ``kill_storm_envelopes`` / ``kill_storm_single``: SIGKILL the worker again and again at
  random moments, restart it after a pause; batch envelopes of 500 events, or one event
  per message;
* ``rebalance_two_workers``: two workers share the partitions; one is killed mid-stream
  and restarted;
* ``clickhouse_pause``: ClickHouse stopped with SIGSTOP, then SIGCONT;
* ``clickhouse_restart``: ClickHouse killed (SIGKILL), started again on the same data;
* ``clickhouse_down_at_start``: the worker starts while ClickHouse is down;
* ``broker_pause``: the broker stopped with SIGSTOP, then SIGCONT;
* ``sink_stall_live``: live event time (events stamped with the wall clock as they are
  sent, at a steady rate) while ClickHouse is paused;
* ``oversize_and_poison``: every kind of bad message on every source topic, between
  good traffic.

Traffic is deterministic from the seed: four models (one changes version half-way, one
drifts), 13 features, labels for 30 % of the predictions (some before their prediction,
some windows later, some twice), a "revenue" outcome for 20 % (some before their
prediction, some twice, some corrected later), GPU and host samples of two hosts (one GPU runs hot),
OpenTelemetry spans of a traced service calling a feature store and a database, recorded
with the SDK and sent as the Collector's Kafka exporter writes them (OTLP protobuf, no key;
the feature store slow, with timeouts, in every fourth window), a few single events sent
after their window closed (late on purpose), and poison
messages (invalid JSON, a label without request_id, a message over
``DRIFTLINE_MAX_MESSAGE_BYTES``). It is produced by a plain aiokafka producer, as the
README documents the JSON, at a pace spread over the experiment.

The oracle reads ClickHouse over plain HTTP once the consumer group has caught up and
the tables stop changing: per model x version x feature x window ``count`` and
``missing_count`` (``feature_windows FINAL``), per window labelled predictions and
positive labels (``labeled_predictions FINAL``), per window outcomes reported and their
total (``outcomes FINAL``), per host (x GPU) x window samples
(``gpu_windows`` / ``host_windows FINAL``), per caller x callee and per service x operation
x window calls and errors (``service_calls`` / ``service_operations FINAL``: no span is
late by design) must equal what was sent, exactly; a cell
below is *lost*, above (or never sent) *double*, absent *missing*. Also: each poison
message in ``dead_letters`` once, with a reason; ``late_events`` exactly the late events
sent; no ``(id, state)`` twice in ``alerts FINAL`` and the alert topic saying the same;
no ``Traceback`` / ``crashed`` / ``RuntimeError`` line in any worker log; every worker
alive at the end; no timeout.

Workers run with the default settings except: 4 partitions, ``DRIFTLINE_MAX_MESSAGE_BYTES``
256 KiB (so an oversize message is cheap), and ``DRIFTLINE_IDLE_CLOSE_SECONDS`` shorter than
every outage (5 s short, 15 s full): an outage must not pass for quiet models, whose
windows the worker would close early and whose next events it would then count as late.

    python benchmarks/chaos.py [--short] [--runs N] [--only NAME,...] [--events N]
                               [--kills N] [--seed N] [--json PATH] [--home DIR]

Prints a table, one row per experiment and run; exits 1 if any row fails. ``--short``
(about seven minutes on two cores) is what CI runs; the full form (500,000 events, 20 kills, 60 s
ClickHouse outages) takes far longer: its envelope kill storm alone about six minutes.
``--home`` keeps the worker logs (``<experiment>-<run>-<tag>/worker-<n>.log``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

# The modules beside this one, also when it is loaded by its path rather than run.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from chaos_lab import FULL, SHORT, Lab, Row, Run, Scale  # noqa: E402
from chaos_traffic import (  # noqa: E402, F401 - re-exported: the integration test uses them
    CATEGORICAL,
    MODELS,
    NUMERIC,
    OUTPUTS,
    T0,
    TRACED,
    TrafficPlan,
    W,
    compare,
    make_traffic,
)

# --------------------------------------------------------------------------- experiments


def storm_seconds(lab: Lab) -> float:
    """How long the storm's traffic is produced: a third of the storm's expected length,
    so the worker mostly works through a backlog, with full batches, when it is killed."""
    s = lab.scale
    startup = 5.0
    return lab.kills * (sum(s.kill_run_s) / 2 + sum(s.kill_down_s) / 2 + startup) / 3


def kill_storm(lab: Lab, run: int, wire: str) -> Row:
    name = f"kill_storm_{wire}"
    r = Run(lab, name, run, lab.plan(run, wire, seconds=storm_seconds(lab)))
    r.prepare()
    r.start_worker()
    r.start_traffic()
    for k in range(lab.kills):
        # The worker's start-up (~5 s) is not counted: it runs this long once it is ready.
        run_s = float(r.rng.uniform(*lab.scale.kill_run_s))
        ready_s = r.wait_ready()
        time.sleep(run_s)
        r.kill_worker()
        down = float(r.rng.uniform(*lab.scale.kill_down_s))
        r.say(f"SIGKILL {k + 1}/{lab.kills} at traffic {r.traffic_elapsed():.1f} s "
              f"(ready after {ready_s:.1f} s, then ran {run_s:.1f} s), down {down:.1f} s")
        time.sleep(down)
        r.start_worker()
    return r.finish()


def kill_storm_envelopes(lab: Lab, run: int) -> Row:
    return kill_storm(lab, run, "envelopes")


def kill_storm_single(lab: Lab, run: int) -> Row:
    return kill_storm(lab, run, "single")


def rebalance_two_workers(lab: Lab, run: int) -> Row:
    r = Run(lab, "rebalance_two_workers", run, lab.plan(run))
    r.prepare()
    r.begin(workers=2)
    r.at(0.4)
    r.say("SIGKILL worker 1")
    r.kill_worker(1)
    time.sleep(float(r.rng.uniform(*lab.scale.kill_down_s)) + 2.0)
    r.say("worker 1 starts again")
    r.start_worker(1)
    return r.finish()


def clickhouse_pause(lab: Lab, run: int) -> Row:
    r = Run(lab, "clickhouse_pause", run, lab.plan(run))
    r.prepare()
    r.begin()
    r.at(0.25)
    with lab.clickhouse_restored():
        r.pause("ClickHouse", lab.stack.clickhouse.pid, lab.scale.clickhouse_outage_s)
    return r.finish()


def clickhouse_restart(lab: Lab, run: int) -> Row:
    r = Run(lab, "clickhouse_restart", run, lab.plan(run))
    r.prepare()
    r.begin()
    r.at(0.25)
    clickhouse = lab.stack.clickhouse
    with lab.clickhouse_restored():
        if clickhouse.pid is None:
            raise RuntimeError("ClickHouse is not running")
        r.say("SIGKILL ClickHouse")
        os.kill(clickhouse.pid, signal.SIGKILL)
        clickhouse.stop()  # reaps it
        time.sleep(lab.scale.clickhouse_outage_s)
        r.say("ClickHouse starts again on the same data")
    return r.finish()


def clickhouse_down_at_start(lab: Lab, run: int) -> Row:
    r = Run(lab, "clickhouse_down_at_start", run, lab.plan(run))
    r.prepare()
    with lab.clickhouse_restored():
        lab.stack.clickhouse.stop()
        r.say("ClickHouse stopped; the worker starts")
        r.start_worker()
        r.start_traffic()
        time.sleep(lab.scale.down_at_start_s)
        r.say("ClickHouse starts")
    return r.finish()


def broker_pause(lab: Lab, run: int) -> Row:
    r = Run(lab, "broker_pause", run, lab.plan(run))
    r.prepare()
    r.begin()
    r.at(0.25)
    broker = lab.stack.broker
    try:
        r.pause("the broker", broker.pid, lab.scale.broker_pause_s)
    finally:
        if broker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.pid, signal.SIGCONT)
    return r.finish()


def sink_stall_live(lab: Lab, run: int) -> Row:
    s = lab.scale
    plan = lab.plan(run, live=True, seconds=s.live_s,
                    events=lab.events or int(s.live_rate * s.live_s))
    r = Run(lab, "sink_stall_live", run, plan)
    r.prepare()
    r.begin()
    r.at(0.25)
    with lab.clickhouse_restored():
        r.pause("ClickHouse", lab.stack.clickhouse.pid, s.clickhouse_outage_s)
    return r.finish()


def oversize_and_poison(lab: Lab, run: int) -> Row:
    s = lab.scale
    r = Run(lab, "oversize_and_poison", run, lab.plan(
        run, poison="all", max_message_bytes=s.poison_max_message_bytes,
        oversize_bytes=s.poison_oversize_bytes))
    r.prepare()
    r.start_worker()
    r.start_traffic()
    return r.finish()


EXPERIMENTS: dict[str, Callable[[Lab, int], Row]] = {
    "kill_storm_envelopes": kill_storm_envelopes,
    "kill_storm_single": kill_storm_single,
    "rebalance_two_workers": rebalance_two_workers,
    "clickhouse_pause": clickhouse_pause,
    "clickhouse_restart": clickhouse_restart,
    "clickhouse_down_at_start": clickhouse_down_at_start,
    "broker_pause": broker_pause,
    "sink_stall_live": sink_stall_live,
    "oversize_and_poison": oversize_and_poison,
}


def run_experiment(lab: Lab, name: str, run: int) -> Row:
    """One experiment; an exception in the harness is a failed row, not a stopped suite."""
    began = time.monotonic()
    try:
        return EXPERIMENTS[name](lab, run)
    except Exception as exc:  # noqa: BLE001 - one broken experiment is a failed row
        lab.console.print_exception()
        row = Row(name, run, 0, seconds=time.monotonic() - began,
                  failures=[f"harness: {type(exc).__name__}: {exc}"])
        return row


# --------------------------------------------------------------------------- output


def table(rows: list[Row], scale: Scale) -> Table:
    out = Table("experiment", "run", "events", "cells", "lost", "double", "missing",
                "dead letters", "late", "dup alerts", "crash lines", "alive", "s", "result",
                title=f"driftline chaos suite ({scale.name} form)")
    for r in rows:
        dup = str(r.duplicate_alerts) + (f" (+{r.topic_duplicate_alerts} topic)"
                                         if r.topic_duplicate_alerts else "")
        if not r.alerts_agree:
            dup += " topic≠table"
        late_expected = "≠" if r.late_expected < 0 else str(r.late_expected)
        out.add_row(
            r.experiment, str(r.run), f"{r.events:,}", f"{r.cells:,}", str(r.lost),
            str(r.double), str(r.missing),
            f"{'ok' if r.dead_letters_ok else 'NO'} {r.dead_letters}/{r.dead_letters_expected}",
            f"{r.late}/{late_expected}", f"{dup} of {r.alerts}", str(r.crash_lines),
            "yes" if r.alive else "NO", f"{r.seconds:.0f}",
            "[green]ok[/green]" if r.ok else f"[red]FAIL[/red] {', '.join(r.failures)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI form: minutes, not hours")
    parser.add_argument("--runs", type=int, default=1, help="runs of each experiment")
    parser.add_argument("--only", default="", help=f"comma-separated from {', '.join(EXPERIMENTS)}")
    parser.add_argument("--events", type=int, help="prediction events per experiment")
    parser.add_argument("--kills", type=int, help="SIGKILLs per kill storm")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--home", type=Path,
                        help="keep worker logs and server data here (default: a temp dir)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(EXPERIMENTS)
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        parser.error(f"unknown experiment(s): {', '.join(sorted(unknown))}")
    scale = SHORT if args.short else FULL
    logging.basicConfig(level=logging.CRITICAL)  # the clients' retry noise during outages
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # CI logs: one line per row
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        home = args.home or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="driftline-chaos-")))
        lab = stack.enter_context(Lab(home, scale, console, args.seed, args.events, args.kills))
        for name in names:
            for run in range(args.runs):
                rows.append(run_experiment(lab, name, run))
                console.print(table(rows[-1:], scale))
    console.print(table(rows, scale))
    for r in rows:
        if not r.ok:
            console.print(f"[bold]{r.experiment} run {r.run}[/bold]: "
                          f"{json.dumps(r.details, default=str)[:3000]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(
            {"form": scale.name, "seed": args.seed,
             "rows": [dataclasses.asdict(r) | {"ok": r.ok} for r in rows]},
            indent=2, default=str))
        console.print(f"wrote {args.json}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
