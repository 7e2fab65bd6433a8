"""Pipeline runs and their SLAs, from OpenLineage run events, one partition at a time.

Run events arrive keyed by job (``<namespace>/<name>``), so a job's runs meet on one
partition, in log order; driftline's own watermarks (written to the same partition when it
is quiet) move its clock forward. Everything is decided from the log: the clock is the
largest event time read, so a replay decides the same, and a run that should have happened
is noticed from the absence of its START when the clock passes its deadline.

Per job, :class:`PipelinePartition` keeps the runs in flight, when it last started and
last succeeded, and its last 20 durations; per window of event time, runs started,
completed and failed and their durations. When a window closes, each job with runs in it,
or with a schedule, is judged by the ``category = "pipeline"`` rules:

* ``run_failed``: runs that ended FAIL or ABORT in the window (good: a run completed);
* ``run_duration_minutes`` (off unless set per job) and ``run_duration_ratio``: the longest
  completed run, and it over the median of the job's previous runs (from 5 of them);
* ``missed_run_minutes``: how far the clock is past ``last start + every + grace`` for a job
  whose rules say ``every_minutes``, or past ``due_by`` (UTC) + grace on a day with no
  completed run (good: a run started, or completed, in time);
* ``stale_dataset_minutes``: for a dataset a ``[datasets."<pattern>"]`` rule watches, how
  far it is past ``max_age_minutes`` since a completed run last wrote it; the alert names
  the models the rule says read it.

A job's incidents open on the first bad window and resolve on the first good one (a
pipeline is fixed by one good run): ``pipeline:<job>::run:<metric>``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.evaluation import Score, evaluate_window
from driftline.models.alerting.incidents import IncidentTracker
from driftline.models.alerting.rules import RulesConfig
from driftline.models.lineage.events import RunEvent

__all__ = ["PipelinePartition", "PipelineResult", "RunRow", "Schedule", "WindowRow",
           "job_key", "schedule_for"]

HISTORY = 20  # durations kept per job
MIN_HISTORY = 5  # before a run is compared with the job's median
_FEATURE = "run"
_ENDED = {"COMPLETE", "FAIL", "ABORT"}


def job_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a job's runs are expected: a START at least every ``every_minutes``, and/or a
    completed run each day by ``due_by_minutes`` after midnight UTC."""

    every_minutes: float | None = None
    grace_minutes: float = 0.0
    due_by_minutes: float | None = None

    def overdue_minutes(self, at: int, last_start: int | None,
                        last_success: int | None) -> float | None:
        """How late the job is at ``at`` (0: on time); None when nothing can be said yet."""
        late: list[float] = []
        if self.every_minutes is not None and last_start is not None:
            deadline = last_start + (self.every_minutes + self.grace_minutes) * 60_000
            late.append(max(0.0, (at - deadline) / 60_000))
        if self.due_by_minutes is not None:
            day = at - at % 86_400_000
            deadline = day + (self.due_by_minutes + self.grace_minutes) * 60_000
            done = last_success is not None and last_success >= day
            late.append(0.0 if done or at <= deadline else (at - deadline) / 60_000)
        return max(late) if late else None


def _most_specific(table: Mapping[str, Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    matches = [p for p in table if fnmatch.fnmatchcase(name, p)]
    return table[max(matches, key=len)] if matches else None


def schedule_for(pipelines: Mapping[str, Mapping[str, Any]], job: str) -> Schedule | None:
    """The schedule of the most specific pattern of ``[pipelines."<pattern>"]`` matching."""
    rule = _most_specific(pipelines, job)
    if rule is None or not ({"every_minutes", "due_by"} & rule.keys()):
        return None
    due_by = rule.get("due_by")
    hours, _, minutes = str(due_by or "0:0").partition(":")
    return Schedule(rule.get("every_minutes"), float(rule.get("grace_minutes", 0.0)),
                    int(hours) * 60 + int(minutes) if due_by is not None else None)


@dataclasses.dataclass(frozen=True)
class RunRow:
    """One run as known after an event: a row of ``pipeline_runs`` (the latest wins)."""

    job_namespace: str
    job_name: str
    run_id: str
    state: str
    started_at: int | None
    ended_at: int | None
    duration_seconds: float | None
    parent_run_id: str
    parent_job: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    error_message: str
    event_time: int


@dataclasses.dataclass(frozen=True)
class WindowRow:
    """One job in one window: a row of ``pipeline_windows``."""

    job: str
    window_start: int
    window_end: int
    started: int
    completed: int
    failed: int
    duration_sum_seconds: float
    duration_max_seconds: float | None
    last_start: int | None
    last_success: int | None


@dataclasses.dataclass
class PipelineResult:
    runs: list[RunRow] = dataclasses.field(default_factory=list)
    windows: list[WindowRow] = dataclasses.field(default_factory=list)
    alerts: list[Alert] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Job:
    running: dict[str, int] = dataclasses.field(default_factory=dict)  # run id -> start
    last_start: int | None = None
    last_success: int | None = None
    durations: list[float] = dataclasses.field(default_factory=list)
    #: (run id, event type) recently applied: an event forwarded twice counts once.
    seen: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Window:
    started: int = 0
    completed: int = 0
    failed: int = 0
    durations: list[float] = dataclasses.field(default_factory=list)


class PipelinePartition:
    def __init__(self, rules: RulesConfig, window_ms: int, lateness_ms: int) -> None:
        self.rules = rules
        self.window_ms = window_ms
        self.lateness_ms = lateness_ms
        self.applied_offset = -1
        self.clock = 0
        self.jobs: dict[str, _Job] = {}
        self.windows: dict[tuple[str, int], _Window] = {}
        #: Per job, the last window judged (a scheduled job is judged every window).
        self.judged: dict[str, int] = {}
        #: Per dataset (``namespace/name``), when a completed run last wrote it.
        self.datasets: dict[str, int] = {}
        self.incidents = IncidentTracker(open_after=1, resolve_after=1, cooldown_windows=0)

    def apply(self, items: Sequence[tuple[int, RunEvent | int]]) -> PipelineResult:
        """Apply run events and watermarks (an int: an event time) in offset order."""
        result = PipelineResult()
        for offset, item in items:
            if offset <= self.applied_offset:
                continue  # a replay
            self.applied_offset = offset
            if isinstance(item, int):
                self.clock = max(self.clock, item)
            else:
                row = self._event(item)
                if row is not None:
                    result.runs.append(row)
                self.clock = max(self.clock, item.event_time_ms)
        self._close(result)
        return result

    def _event(self, e: RunEvent) -> RunRow | None:
        job = self.jobs.setdefault(job_key(e.job_namespace, e.job_name), _Job())
        mark = f"{e.run_id}:{e.event_type}"
        if mark in job.seen:
            return None
        job.seen = [*job.seen[-199:], mark]
        window = self.windows.setdefault(
            (job_key(e.job_namespace, e.job_name), e.event_time_ms - e.event_time_ms
             % self.window_ms), _Window())
        start = job.running.get(e.run_id)
        duration = None
        if e.event_type == "START":
            job.running[e.run_id] = start = e.event_time_ms
            job.last_start = max(job.last_start or start, start)
            window.started += 1
        elif e.event_type in _ENDED:
            job.running.pop(e.run_id, None)
            if start is not None:
                duration = (e.event_time_ms - start) / 1000
            if e.event_type == "COMPLETE":
                window.completed += 1
                job.last_success = max(job.last_success or 0, e.event_time_ms)
                for dataset in e.outputs:
                    name = job_key(*dataset)
                    self.datasets[name] = max(self.datasets.get(name, 0), e.event_time_ms)
                if duration is not None:
                    window.durations.append(duration)
            else:
                window.failed += 1
        if len(job.running) > 100:  # runs that never ended: keep the newest
            for run_id in sorted(job.running, key=job.running.__getitem__)[:-100]:
                del job.running[run_id]
        state = "RUNNING" if e.event_type in ("START", "RUNNING") else e.event_type
        parent = (job_key(e.parent_job_namespace, e.parent_job_name)
                  if e.parent_job_namespace and e.parent_job_name else "")
        return RunRow(e.job_namespace, e.job_name, e.run_id, state, start,
                      e.event_time_ms if e.event_type in _ENDED else None, duration,
                      e.parent_run_id or "", parent, tuple(job_key(*d) for d in e.inputs),
                      tuple(job_key(*d) for d in e.outputs), e.error_message or "",
                      e.event_time_ms)

    def _close(self, result: PipelineResult) -> None:
        horizon = self.clock - self.lateness_ms  # windows ending at or before it close
        closing = sorted(k for k in self.windows if k[1] + self.window_ms <= horizon)
        for job, start in closing:
            result.windows.append(self._row(job, start, self.windows[(job, start)]))
        latest = horizon - horizon % self.window_ms - self.window_ms  # last closed window
        scheduled = {job for job in self.jobs
                     if schedule_for(self.rules.pipelines, job) is not None}
        for job in sorted({job for job, _ in closing} | scheduled):
            starts = sorted({s for j, s in closing if j == job}
                            | ({latest} if job in scheduled else set()))
            for start in starts:
                if start > self.judged.get(job, -1) and start >= 0:
                    result.alerts += self._judge(job, start, self.windows.get((job, start)))
                    self.judged[job] = start
        if latest >= 0 and latest > self.judged.get("", -1):  # datasets: once a window
            result.alerts += self._judge_datasets(latest)
            self.judged[""] = latest
        for key in closing:
            closed = self.windows.pop(key)
            state = self.jobs[key[0]]
            state.durations = [*state.durations, *closed.durations][-HISTORY:]

    def _row(self, job: str, start: int, w: _Window) -> WindowRow:
        state = self.jobs[job]
        return WindowRow(job, start, start + self.window_ms, w.started, w.completed, w.failed,
                         sum(w.durations), max(w.durations) if w.durations else None,
                         state.last_start, state.last_success)

    def _judge(self, job: str, start: int, window: _Window | None) -> list[Alert]:
        state = self.jobs[job]
        scores: list[tuple[str, float]] = []
        if window is not None and (window.failed or window.completed):
            scores.append(("run_failed", float(window.failed)))
        if window is not None and window.durations:
            longest = max(window.durations)
            scores.append(("run_duration_minutes", longest / 60))
            if len(state.durations) >= MIN_HISTORY:
                median = statistics.median(state.durations)
                if median > 0:
                    scores.append(("run_duration_ratio", longest / median))
        schedule = schedule_for(self.rules.pipelines, job)
        overdue = (None if schedule is None else schedule.overdue_minutes(
            start + self.window_ms, state.last_start, state.last_success))
        if overdue is not None:
            scores.append(("missed_run_minutes", overdue))
        if not scores:
            return []
        evaluation = evaluate_window(
            self.rules, job, "", start, start + self.window_ms,
            [Score(job, "", _FEATURE, metric, value, None, 0, 1) for metric, value in scores],
            windows_seen=1_000_000)
        return self.incidents.update(evaluation)

    def _judge_datasets(self, start: int) -> list[Alert]:
        """``stale_dataset_minutes`` of each dataset a rule watches: minutes past its
        ``max_age_minutes`` since a completed run last wrote it (0: fresh enough)."""
        alerts: list[Alert] = []
        end = start + self.window_ms
        for name, written in sorted(self.datasets.items()):
            rule = _most_specific(self.rules.datasets, name)
            if rule is None:
                continue
            limit = float(rule["max_age_minutes"])
            age = (end - written) / 60_000
            value = max(0.0, age - limit)
            evaluation = evaluate_window(
                self.rules, name, "", start, end,
                [Score(name, "", "dataset", "stale_dataset_minutes", value, None, 0, 1)],
                windows_seen=1_000_000)
            readers = ", ".join(rule.get("models", ())) or "no model named"
            reason = f"not written for {age:.0f} minutes, limit {limit:g}; read by {readers}"
            alerts += self.incidents.update(dataclasses.replace(evaluation, findings=tuple(
                dataclasses.replace(f, reason=reason) for f in evaluation.findings)))
        return alerts

    # -- checkpoint ---------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"applied_offset": self.applied_offset, "clock": self.clock,
                "jobs": {k: dataclasses.asdict(v) for k, v in self.jobs.items()},
                "windows": [[j, s, dataclasses.asdict(w)] for (j, s), w in self.windows.items()],
                "judged": self.judged, "datasets": self.datasets,
                "incidents": self.incidents.to_dict()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], rules: RulesConfig, window_ms: int,
                   lateness_ms: int) -> PipelinePartition:
        self = cls(rules, window_ms, lateness_ms)
        self.applied_offset = int(state["applied_offset"])
        self.clock = int(state["clock"])
        self.jobs = {k: _Job(**v) for k, v in state["jobs"].items()}
        self.windows = {(j, int(s)): _Window(**w) for j, s, w in state["windows"]}
        self.judged = {k: int(v) for k, v in state["judged"].items()}
        self.datasets = {k: int(v) for k, v in state.get("datasets", {}).items()}
        self.incidents = IncidentTracker.from_dict(state["incidents"])
        return self

