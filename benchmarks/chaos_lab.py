"""The chaos suite's lab: its two scales (full and short), the embedded stack every
experiment shares (``Lab``), and one experiment's run (``Run``): its settings, workers and
traffic, then every table checked against the oracle, summed up in a ``Row``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from chaos_clients import (
    ClickHouseReader,
    TrafficThread,
    _alert_messages,
    _committed_any,
    consumer_lag,
)
from chaos_traffic import T0, Expected, Message, TrafficPlan, compare, make_traffic
from rich.console import Console

from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.embedded.tansu_compat import install as install_tansu_compat
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

#: A worker log line that says something went wrong.
CRASH_LINE = re.compile(r"Traceback|[Cc]rashed|RuntimeError")


# --------------------------------------------------------------------------- scales


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big and how long: the full form, or the short one CI runs."""

    name: str
    events: int
    single_events: int  # singles are ~20x slower to process: fewer by default
    windows: int
    kills: int
    kill_run_s: tuple[float, float]  # worker runs this long between kills
    kill_down_s: tuple[float, float]  # and stays dead this long
    clickhouse_outage_s: float
    broker_pause_s: float
    down_at_start_s: float
    traffic_s: float  # wall time the production of an outage experiment takes
    live_rate: int  # events per second of live traffic
    live_s: float
    idle_close_s: float
    #: DRIFTLINE_MAX_MESSAGE_BYTES, and the size of every experiment's oversize message:
    #: over the limit, yet within the worker producer's headroom (64 KiB), so it can be
    #: dead-lettered whole; bad input is what ``oversize_and_poison`` is about.
    max_message_bytes: int
    oversize_bytes: int
    #: The same for ``oversize_and_poison``: past the headroom too (full form: the default
    #: limit and 9 MB).
    poison_max_message_bytes: int
    poison_oversize_bytes: int
    timeout_s: float  # after traffic and chaos, to catch up and settle
    stall_s: float  # ... unless neither the group nor the tables move for this long


FULL = Scale("full", events=500_000, single_events=100_000, windows=20, kills=20,
             kill_run_s=(3.0, 15.0), kill_down_s=(1.0, 5.0), clickhouse_outage_s=60.0,
             broker_pause_s=30.0, down_at_start_s=20.0, traffic_s=150.0, live_rate=1000,
             live_s=180.0, idle_close_s=15.0, max_message_bytes=256 * 1024,
             oversize_bytes=300_000, poison_max_message_bytes=8 * 1024 * 1024,
             poison_oversize_bytes=9_000_000, timeout_s=600.0, stall_s=180.0)
SHORT = Scale("short", events=20_000, single_events=20_000, windows=8, kills=5,
              kill_run_s=(1.0, 3.0), kill_down_s=(0.5, 1.5), clickhouse_outage_s=10.0,
              broker_pause_s=10.0, down_at_start_s=10.0, traffic_s=20.0, live_rate=500,
              live_s=20.0, idle_close_s=5.0, max_message_bytes=256 * 1024,
              oversize_bytes=300_000, poison_max_message_bytes=256 * 1024,
              poison_oversize_bytes=400_000, timeout_s=150.0, stall_s=45.0)


# --------------------------------------------------------------------------- a run


@dataclasses.dataclass
class Row:
    experiment: str
    run: int
    events: int
    cells: int = 0
    lost: int = 0
    double: int = 0
    missing: int = 0
    dead_letters: int = 0
    dead_letters_expected: int = 0
    dead_letters_ok: bool = False
    late: int = 0
    late_expected: int = 0
    alerts: int = 0
    duplicate_alerts: int = 0
    topic_duplicate_alerts: int = 0
    alerts_agree: bool = True
    crash_lines: int = 0
    alive: bool = False
    timed_out: bool = False
    producer_error: str | None = None
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def judge(self) -> None:
        checks = {"lost": self.lost == 0, "double": self.double == 0,
                  "missing": self.missing == 0, "dead letters": self.dead_letters_ok,
                  "late": self.late == self.late_expected,
                  "duplicate alerts": self.duplicate_alerts == 0 and self.alerts_agree,
                  "crash lines": self.crash_lines == 0, "worker dead": self.alive,
                  "timeout": not self.timed_out, "producer": self.producer_error is None}
        self.failures = [name for name, passed in checks.items() if not passed]


class Run:
    """One experiment: its settings, workers, traffic and oracle."""

    def __init__(self, lab: Lab, name: str, run: int, plan: TrafficPlan,
                 **overrides: Any) -> None:
        self.lab, self.name, self.run, self.plan = lab, name, run, plan
        self.scale = lab.scale
        tag = uuid.uuid4().hex[:6]
        self.dir = lab.home / f"{name}-{run}-{tag}"
        self.settings = Settings().replace(
            **lab.stack.settings_overrides(),
            predictions_topic=f"chaos-{tag}-predictions", labels_topic=f"chaos-{tag}-labels",
            telemetry_topic=f"chaos-{tag}-telemetry", alerts_topic=f"chaos-{tag}-alerts",
            dead_letter_topic=f"chaos-{tag}-dead-letters",
            references_topic=f"chaos-{tag}-references", registry_topic=f"chaos-{tag}-registry",
            lineage_topic=f"chaos-{tag}-lineage", pipelines_topic=f"chaos-{tag}-pipelines",
            traces_topic=f"chaos-{tag}-traces", service_chains_topic=f"chaos-{tag}-chains",
            service_hops_topic=f"chaos-{tag}-hops",
            retraining_topic=f"chaos-{tag}-retraining", clickhouse_database=f"chaos_{tag}",
            app_id=f"chaos-{tag}", partitions=4, idle_close_seconds=self.scale.idle_close_s,
            max_message_bytes=plan.max_message_bytes, **overrides)
        self.reader = ClickHouseReader(self.settings.clickhouse_url,
                                       self.settings.clickhouse_database)
        self.workers: dict[int, WorkerProcess] = {}
        self._ready_before: dict[int, int] = {}  # "Ready" lines in a slot's log at its start
        self.rng = np.random.default_rng(plan.seed + 1)
        self.began = time.monotonic()
        self.messages: list[Message] = []
        self.expected = Expected()
        self.traffic: TrafficThread | None = None
        self.t0 = T0
        self._lag: int | None = None

    def say(self, text: str) -> None:
        self.lab.console.log(f"[bold]{self.name}[/bold] {time.monotonic() - self.began:6.1f}s "
                             f"{text}")

    def prepare(self) -> None:
        asyncio.run(ensure_topics(self.settings))

    def start_worker(self, slot: int = 0) -> None:
        settings = self.settings.replace(state_dir=str(self.dir / f"state-{slot}"))
        self._ready_before[slot] = self._readies(self.dir / f"worker-{slot}.log")
        self.workers[slot] = WorkerProcess(settings, self.dir / f"worker-{slot}.log").start()

    def wait_ready(self, slot: int = 0, timeout: float = 60.0) -> float:
        """Seconds until the worker in ``slot`` logs that it is ready (Faust's "Ready")
        since it was last started."""
        began = time.monotonic()
        log = self.dir / f"worker-{slot}.log"
        while time.monotonic() - began < timeout and self.workers[slot].is_running():
            if self._readies(log) > self._ready_before[slot]:
                break
            time.sleep(0.2)
        return time.monotonic() - began

    @staticmethod
    def _readies(log: Path) -> int:
        return log.read_text(errors="replace").count("Worker]: Ready") if log.exists() else 0

    def kill_worker(self, slot: int = 0) -> None:
        self.workers[slot].kill()

    def start_traffic(self) -> None:
        """Build the traffic (live: stamped from now on) and start sending it."""
        self.t0 = (int(time.time() * 1000) + 1000) if self.plan.live else T0
        self.messages, self.expected = make_traffic(self.plan, self.t0)
        self.traffic = TrafficThread(self.settings, self.messages,
                                     self.t0 / 1000 if self.plan.live else None)
        self.traffic.start()
        self.say(f"traffic: {len(self.messages):,} messages over "
                 f"{self.messages[-1].due:.0f} s")

    def traffic_elapsed(self) -> float:
        return 0.0 if self.traffic is None else time.monotonic() - self.traffic.started_at

    def begin(self, workers: int = 1) -> None:
        """Start the workers, and the traffic once they are ready: an outage then meets a
        worker at work, with traffic before and after it."""
        for slot in range(workers):
            self.start_worker(slot)
        for slot in range(workers):
            self.wait_ready(slot)
        self.start_traffic()
        self.wait_processing()

    def at(self, share: float) -> None:
        """Sleep until this share of the traffic's production time has passed."""
        time.sleep(max(0.0, share * self.plan.seconds - self.traffic_elapsed()))

    def wait_processing(self, timeout: float = 90.0) -> None:
        """Until the group has committed something: the worker is at work."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _committed_any(self.settings):
                return
            time.sleep(0.5)
        self.say("the worker committed nothing in time; going on")

    def pause(self, what: str, pid: int | None, seconds: float) -> None:
        if pid is None:
            raise RuntimeError(f"{what} is not running")
        self.say(f"SIGSTOP {what} for {seconds:g} s")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.say(f"SIGCONT {what}")

    def finish(self) -> Row:
        row = Row(self.name, self.run, self.expected.events)
        assert self.traffic is not None
        self.traffic.join()
        row.producer_error = self.traffic.error
        # A worker restarted by the chaos's last step is still starting (5-10 s on a slow
        # machine): the wait for its idle windows to close counts from when it is ready.
        for slot, worker in self.workers.items():
            if worker.is_running():
                self.wait_ready(slot)
        row.timed_out = not self._settle()
        try:
            self._judge_tables(row)
            alerts = asyncio.run(_alert_messages(self.settings))
            row.topic_duplicate_alerts = len(alerts) - len(set(alerts))
            row.alerts_agree = set(alerts) == row.details.pop("alert_keys")
        finally:
            row.alive = bool(self.workers) and all(w.is_running() for w in self.workers.values())
            for worker in self.workers.values():
                worker.stop()
        row.crash_lines, row.details["log_lines"] = self._crash_lines()
        row.seconds = time.monotonic() - self.began
        row.details["labels_sent"] = self.expected.labels_sent
        row.details["telemetry_samples"] = self.expected.samples
        row.details["trace_requests"] = self.expected.trace_requests
        row.judge()
        return row

    def _snapshot(self) -> tuple[Any, ...]:
        db = self.reader
        try:
            return (
                db.rows("SELECT count(), sum(count) FROM feature_windows FINAL"),
                db.rows("SELECT count() FROM labeled_predictions FINAL"),
                db.rows("SELECT count(), sum(samples) FROM gpu_windows FINAL"),
                db.rows("SELECT count() FROM host_windows FINAL"),
                db.rows("SELECT count() FROM dead_letters FINAL"),
                db.rows("SELECT sum(late_events) FROM late_events FINAL"),
                db.rows("SELECT count(), sum(calls) FROM service_calls FINAL"),
                db.rows("SELECT count(), sum(calls) FROM service_operations FINAL"),
            )
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            return ("unreadable", str(exc)[:80])

    def _complete(self, snapshot: tuple[Any, ...]) -> bool:
        try:
            return bool(snapshot[0][0][0] >= len(self.expected.features)
                        and snapshot[2][0][0] >= len(self.expected.gpus)
                        and snapshot[3][0][0] >= len(self.expected.hosts)
                        and snapshot[6][0][0] >= len(self.expected.calls)
                        and snapshot[7][0][0] >= len(self.expected.operations))
        except (IndexError, TypeError):
            return False

    def _settle(self) -> bool:
        """Wait until the group has caught up and the tables stopped changing since the
        chaos ended: 3 s when every expected row is there, else long enough for idle
        windows to close; give up after ``timeout_s``, or ``stall_s`` of no progress."""
        deadline = time.monotonic() + self.scale.timeout_s
        last: tuple[Any, ...] | None = None
        since = moved = report = time.monotonic()
        while time.monotonic() < deadline:
            if self.workers and not any(w.is_running() for w in self.workers.values()):
                self.say("every worker has exited")
                return True
            snapshot = self._snapshot()
            by_topic = consumer_lag(self.settings)
            lag = None if by_topic is None else sum(by_topic.values())
            if snapshot != last:
                since = time.monotonic()
            if (snapshot, lag) != (last, self._lag):
                moved = time.monotonic()
            last, self._lag = snapshot, lag
            if time.monotonic() >= report:
                report = time.monotonic() + 10.0
                self.say(f"waiting: consumer lag {by_topic}, rows complete "
                         f"{self._complete(snapshot)}, "
                         f"unchanged {time.monotonic() - since:.0f} s")
            # Incomplete: wait out a worker's idle close (checked every idle / 4 s), which
            # may only start once the chaos is over.
            settle = 3.0 if self._complete(snapshot) else 3 * self.scale.idle_close_s + 10.0
            if time.monotonic() - since >= settle and lag == 0:
                return True
            if time.monotonic() - moved >= self.scale.stall_s:
                self.say(f"stalled: nothing moved for {self.scale.stall_s:g} s (lag {lag})")
                return False
            time.sleep(1.0)
        self.say(f"not settled within {self.scale.timeout_s:g} s")
        return False

    def _judge_tables(self, row: Row) -> None:
        q = self.reader.rows
        e = self.expected
        features = {(m, v, f, s): (c, miss) for m, v, f, s, c, miss in q(
            "SELECT model, model_version, feature, toUnixTimestamp64Milli(window_start), "
            "count, missing_count FROM feature_windows FINAL")}
        labelled = {(m, v, s): (n, p) for m, v, s, n, p in q(
            "SELECT model, model_version, toUnixTimestamp64Milli(window_start), count(), "
            "countIf(label = '1') FROM labeled_predictions FINAL WHERE expired = 0 "
            "GROUP BY ALL")}
        outcomes = {(m, v, s): (n, int(total)) for m, v, s, n, total in q(
            "SELECT model, model_version, toUnixTimestamp64Milli(window_start), n_reported, "
            "total FROM outcomes FINAL WHERE outcome = 'revenue' AND n_reported > 0")}
        gpus = {(h, g, s): (n,) for h, g, s, n in q(
            "SELECT host, gpu_index, toUnixTimestamp64Milli(window_start), samples "
            "FROM gpu_windows FINAL")}
        hosts = {(h, s): (n,) for h, s, n in q(
            "SELECT host, toUnixTimestamp64Milli(window_start), samples FROM host_windows FINAL")}
        calls = {(a, b, s): (n, f) for a, b, s, n, f in q(
            "SELECT caller, callee, toUnixTimestamp64Milli(window_start), calls, errors "
            "FROM service_calls FINAL")}
        operations = {(a, b, s): (n, f) for a, b, s, n, f in q(
            "SELECT service, operation, toUnixTimestamp64Milli(window_start), calls, errors "
            "FROM service_operations FINAL")}
        kinds = {"features": compare({k: tuple(v) for k, v in e.features.items()}, features),
                 "labels": compare({k: tuple(v) for k, v in e.labelled.items()}, labelled),
                 "outcomes": compare({k: tuple(v) for k, v in e.outcomes.items()}, outcomes),
                 "gpus": compare({k: (v,) for k, v in e.gpus.items()}, gpus),
                 "hosts": compare({k: (v,) for k, v in e.hosts.items()}, hosts),
                 "calls": compare({k: tuple(v) for k, v in e.calls.items()}, calls),
                 "operations": compare({k: tuple(v) for k, v in e.operations.items()},
                                       operations)}
        for kind in kinds.values():
            row.cells += kind["cells"]
            row.lost += kind["lost"]
            row.double += kind["double"]
            row.missing += kind["missing"]
        row.details["cells"] = kinds
        self._judge_side_tables(row)

    def _judge_side_tables(self, row: Row) -> None:
        q = self.reader.rows
        topics = {self.settings.predictions_topic: "predictions",
                  self.settings.labels_topic: "labels",
                  self.settings.telemetry_topic: "telemetry",
                  self.settings.traces_topic: "traces"}
        letters = q("SELECT source_topic, reason FROM dead_letters FINAL")
        by_role = Counter(topics.get(t, t) for t, _ in letters)
        row.dead_letters = len(letters)
        row.dead_letters_expected = sum(self.expected.dead_letters.values())
        row.dead_letters_ok = (by_role == self.expected.dead_letters
                               and all(reason for _, reason in letters))
        row.details["dead_letters"] = {"expected": dict(self.expected.dead_letters),
                                       "got": dict(by_role),
                                       "reasons": sorted({r[:100] for _, r in letters})}
        late = {(m, v, s): n for m, v, s, n in q(
            "SELECT model, model_version, toUnixTimestamp64Milli(window_start), "
            "sum(late_events) FROM late_events FINAL GROUP BY ALL")}
        row.late, row.late_expected = sum(late.values()), sum(self.expected.late.values())
        if late != dict(self.expected.late):
            row.late_expected = -1 if row.late == row.late_expected else row.late_expected
            row.details["late"] = {"expected": _keyed(self.expected.late), "got": _keyed(late)}
        alerts = q("SELECT id, toString(state) FROM alerts FINAL")
        keys = [(i, s) for i, s in alerts]
        row.alerts = len(set(keys))
        row.duplicate_alerts = len(keys) - len(set(keys))
        row.details["alert_keys"] = set(keys)

    def _crash_lines(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        for path in sorted(self.dir.glob("worker-*.log")):
            lines += [line.strip() for line in path.read_text(errors="replace").splitlines()
                      if CRASH_LINE.search(line)]
        return len(lines), list(dict.fromkeys(line[:200] for line in lines))[:8]


def _keyed(counts: dict[Any, int]) -> dict[str, int]:
    return {"/".join(map(str, k)): v for k, v in sorted(counts.items())}


# --------------------------------------------------------------------------- lab


class Lab:
    """The embedded stack and the scratch directory every experiment shares."""

    def __init__(self, home: Path, scale: Scale, console: Console | None = None,
                 seed: int = 1, events: int | None = None, kills: int | None = None) -> None:
        self.home = home
        self.scale = scale
        self.console = console or Console()
        self.seed = seed
        self.events = events
        self.kills = scale.kills if kills is None else kills
        self.stack = EmbeddedStack(home / "embedded")

    def __enter__(self) -> Lab:
        self.stack.start()
        install_tansu_compat()  # high watermarks from a fetch (the broker is tansu)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def plan(self, run: int, wire: str = "envelopes", **changes: Any) -> TrafficPlan:
        s = self.scale
        events = self.events or (s.events if wire == "envelopes" else s.single_events)
        plan = TrafficPlan(events=events, windows=s.windows, wire=wire, seconds=s.traffic_s,
                           max_message_bytes=s.max_message_bytes,
                           oversize_bytes=s.oversize_bytes, seed=self.seed * 1000 + run)
        return dataclasses.replace(plan, **changes)

    @contextlib.contextmanager
    def clickhouse_restored(self) -> Iterator[None]:
        """Whatever an experiment did to ClickHouse, it runs again afterwards."""
        try:
            yield
        finally:
            clickhouse = self.stack.clickhouse
            if clickhouse.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(clickhouse.pid, signal.SIGCONT)
            clickhouse.start()
