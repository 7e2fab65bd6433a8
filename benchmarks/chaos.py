"""Chaos suite: real ``driftline worker`` processes on the embedded broker and ClickHouse,
hit with crashes and outages while predictions, labels and telemetry flow, then checked
cell by cell against what was sent.

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
some windows later, some twice), GPU and host samples of two hosts (one GPU runs hot),
a few single events sent after their window closed (late on purpose), and poison
messages (invalid JSON, a label without request_id, a message over
``DRIFTLINE_MAX_MESSAGE_BYTES``). It is produced by a plain aiokafka producer, as the
README documents the JSON, at a pace spread over the experiment.

The oracle reads ClickHouse over plain HTTP once the consumer group has caught up and
the tables stop changing: per model x version x feature x window ``count`` and
``missing_count`` (``feature_windows FINAL``), per window labelled predictions and
positive labels (``labeled_predictions FINAL``), per host (x GPU) x window samples
(``gpu_windows`` / ``host_windows FINAL``) must equal what was sent, exactly; a cell
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
import asyncio
import contextlib
import dataclasses
import http.client
import itertools
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from driftline.models.telemetry.sample import (
    GpuProcess,
    GpuSample,
    HostMetrics,
    TelemetrySample,
)
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.embedded.tansu_compat import install as install_tansu_compat
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

W = 60_000  # the default window, ms
LATENESS = 10_000  # the default allowed lateness, ms
T0 = 1_764_230_400_000  # a window boundary: 2025-11-27 08:00 UTC
MODELS = ("m0", "m1", "m2", "m3")
NUMERIC = tuple(f"f{i}" for i in range(9))
CATEGORICAL = ("c0", "c1", "c2", "c3")
OUTPUTS = ("output.score", "output.prediction", "service.latency_ms", "service.status")
VOCAB = ("a", "b", "c", "d", "e", "f")
HOSTS = ("h0", "h1")
ROLES = ("predictions", "labels", "telemetry")
GiB = 1024**3
#: A worker log line that says something went wrong.
CRASH_LINE = re.compile(r"Traceback|[Cc]rashed|RuntimeError")

FeatureKey = tuple[str, str, str, int]  # model, version, feature, window start (ms)
WindowKey = tuple[str, str, int]  # model, version, window start
GpuKey = tuple[str, int, int]  # host, GPU index, window start
HostKey = tuple[str, int]  # host, window start


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


# --------------------------------------------------------------------------- traffic


@dataclasses.dataclass(frozen=True)
class Message:
    role: str  # predictions | labels | telemetry
    key: bytes
    value: bytes
    due: float  # seconds after production starts


@dataclasses.dataclass
class Expected:
    """What the traffic makes ClickHouse hold, computed from what was sent."""

    events: int = 0
    labels_sent: int = 0
    samples: int = 0
    features: defaultdict[FeatureKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))  # [count, missing_count]
    labelled: defaultdict[WindowKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))  # [labelled, positives]
    gpus: Counter[GpuKey] = dataclasses.field(default_factory=Counter)
    hosts: Counter[HostKey] = dataclasses.field(default_factory=Counter)
    late: Counter[WindowKey] = dataclasses.field(default_factory=Counter)
    dead_letters: Counter[str] = dataclasses.field(default_factory=Counter)  # by role


@dataclasses.dataclass(frozen=True)
class TrafficPlan:
    events: int
    windows: int
    wire: str  # "envelopes" or "single"
    seconds: float  # wall time production takes (live: also the event-time span)
    max_message_bytes: int
    oversize_bytes: int
    seed: int
    live: bool = False
    poison: str = "standard"  # or "all"
    envelope_events: int = 500
    label_share: float = 0.3
    late_per_model: int = 1


def make_traffic(plan: TrafficPlan, t0: int) -> tuple[list[Message], Expected]:
    """Every message to send, in order, and what ClickHouse must then hold."""
    rng = np.random.default_rng(plan.seed)
    duration = int(plan.seconds * 1000) if plan.live else plan.windows * W
    # Wall seconds per event-time second (live: 1, and a message leaves once its last
    # event time has passed).
    pace = 1.0 if plan.live else plan.seconds / (duration / 1000)
    expected = Expected()
    messages: list[Message] = []
    unlabelled: list[tuple[str, str]] = []
    for model in MODELS:
        messages += _model_traffic(rng, plan, model, t0, duration, pace, expected, unlabelled)
    messages += _telemetry(plan, t0, duration, pace, expected)
    messages += _poison(plan, t0, duration, pace, expected, unlabelled)
    messages.sort(key=lambda m: m.due)  # stable: a model's messages keep their order
    end = max(m.due for m in messages) + 0.1
    closing = t0 + duration + W + LATENESS  # closes every window of the model
    messages += [Message("predictions", m.encode(), orjson.dumps(
        {"type": "watermark", "model": m, "event_time": closing}), end) for m in MODELS]
    for m in messages:
        if m.value not in _OVERSIZE and len(m.value) > plan.max_message_bytes:
            raise ValueError(f"a good message of {len(m.value)} bytes is over the limit")
    return messages, expected


_OVERSIZE: set[bytes] = set()  # values meant to be over the limit (dead letters)


def _model_traffic(rng: np.random.Generator, plan: TrafficPlan, model: str, t0: int,
                   duration: int, pace: float, expected: Expected,
                   unlabelled: list[tuple[str, str]]) -> list[Message]:
    n = plan.events // len(MODELS)
    rel = np.sort(rng.integers(0, duration, n))
    times = t0 + rel
    window = (rel // W).astype(np.int64)
    version = np.where((model == "m0") & (rel >= duration // 2), "v2", "v1")
    columns = _columns(rng, model, n, window, plan.windows)
    ids = [f"{model}-{i}" for i in range(n)]
    starts = (times - times % W).tolist()
    _expect_features(expected, model, version, starts, columns)
    expected.events += n
    chunks = _chunks(plan, rel, version)
    dues = np.empty(n)
    for a, b in chunks:
        dues[a:b] = (rel[b - 1] if plan.wire == "envelopes" else rel[a:b]) / 1000 * pace
    if plan.live:
        dues += 0.05
    out = [_prediction_message(plan, model, str(version[a]), ids, times, columns, a, b,
                               float(dues[b - 1])) for a, b in chunks]
    out += _labels(rng, plan, model, ids, times, rel, version, columns, dues, pace,
                   expected, unlabelled)
    out += _late(plan, model, rel, dues, t0, expected)
    return out


def _columns(rng: np.random.Generator, model: str, n: int, window: np.ndarray,
             windows: int) -> dict[str, list[Any]]:
    """Each field as a list with None for missing: 9 numeric features (m1's f0 drifts in
    the second half), 4 categorical ones, the outputs and the service's measures."""
    cols: dict[str, list[Any]] = {}
    for i, name in enumerate(NUMERIC):
        x = rng.normal(i, 1.0, n)
        if model == "m1" and name == "f0":
            x = x + 3.0 * (window >= windows // 2 + 1)
        cols[name] = _with_nulls(np.round(x, 3).tolist(), rng.random(n) < 0.02)
    for name in CATEGORICAL:
        values = np.array(VOCAB)[rng.integers(0, len(VOCAB), n)].tolist()
        cols[name] = _with_nulls(values, rng.random(n) < 0.01)
    score = np.round(rng.random(n), 4)
    cols["score"] = score.tolist()
    cols["prediction"] = (score >= 0.5).astype(int).tolist()
    cols["latency_ms"] = np.round(rng.gamma(2.0, 10.0, n), 2).tolist()
    cols["status"] = np.where(rng.random(n) < 0.01, "error", "ok").tolist()
    return cols


def _with_nulls(values: list[Any], mask: np.ndarray) -> list[Any]:
    for i in np.flatnonzero(mask).tolist():
        values[i] = None
    return values


def _expect_features(expected: Expected, model: str, version: np.ndarray, starts: list[int],
                     cols: dict[str, list[Any]]) -> None:
    groups: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (v, s) in enumerate(zip(version.tolist(), starts, strict=True)):
        groups[(v, s)].append(i)
    for (v, start), rows in groups.items():
        for name in (*NUMERIC, *CATEGORICAL, *OUTPUTS):
            cell = expected.features[(model, v, name, start)]
            cell[0] += len(rows)
            if name in cols:
                column = cols[name]
                cell[1] += sum(column[i] is None for i in rows)


def _chunks(plan: TrafficPlan, rel: np.ndarray, version: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) index ranges of one message each (one event each for the single form);
    envelopes never mix versions, and live ones hold one second of events."""
    n = len(rel)
    if plan.wire == "single":
        return [(i, i + 1) for i in range(n)]
    cuts = {0, n}
    if plan.live:
        cuts |= set(np.flatnonzero(np.diff(rel // 1000)) + 1)
    else:
        cuts |= set(range(0, n, plan.envelope_events))
    cuts |= set(np.flatnonzero(version[1:] != version[:-1]) + 1)
    edges = sorted(int(c) for c in cuts)
    return list(itertools.pairwise(edges))


def _prediction_message(plan: TrafficPlan, model: str, version: str, ids: list[str],
                        times: np.ndarray, cols: dict[str, list[Any]], a: int, b: int,
                        due: float) -> Message:
    features = (*NUMERIC, *CATEGORICAL)
    if plan.wire == "single":
        doc: dict[str, Any] = {
            "type": "prediction", "model": model, "version": version, "request_id": ids[a],
            "event_time": int(times[a]), "features": {f: cols[f][a] for f in features},
            "prediction": cols["prediction"][a], "score": cols["score"][a],
            "latency_ms": cols["latency_ms"][a], "status": cols["status"][a]}
    else:
        doc = {"type": "prediction_batch", "model": model, "version": version,
               "request_id": ids[a:b], "event_time": times[a:b].tolist(),
               "features": {f: cols[f][a:b] for f in features},
               "prediction": cols["prediction"][a:b], "score": cols["score"][a:b],
               "latency_ms": cols["latency_ms"][a:b], "status": cols["status"][a:b]}
    return Message("predictions", model.encode(), orjson.dumps(doc), due)


def _labels(rng: np.random.Generator, plan: TrafficPlan, model: str, ids: list[str],
            times: np.ndarray, rel: np.ndarray, version: np.ndarray,
            cols: dict[str, list[Any]], dues: np.ndarray, pace: float, expected: Expected,
            unlabelled: list[tuple[str, str]]) -> list[Message]:
    """Labels for a share of the predictions: most seconds after, some windows after
    (not live), some sent before their prediction, some sent twice."""
    n = len(ids)
    chosen = rng.random(n) < plan.label_share
    kind = rng.random(n)
    flip = rng.random(n) < 0.2
    twice = rng.random(n) < 0.05
    delay = rng.integers(1_000, 20_000, n)
    later = rng.integers(W, 2 * W, n)
    labels: list[tuple[float, str, str, int, int]] = []  # due, group, request id, time, label
    for i in np.flatnonzero(chosen).tolist():
        label = int(cols["prediction"][i]) ^ int(flip[i])
        if kind[i] < 0.1:  # before its prediction
            due, group, t = float(dues[i]) - 0.01, "early", int(times[i]) + 1000
        else:
            d = int(later[i]) if kind[i] < 0.3 and not plan.live else int(delay[i])
            d = d // 4 if plan.live else d  # live: within seconds, the run stays short
            due, group, t = (rel[i] + d) / 1000 * pace + (0.05 if plan.live else 0.0), "", \
                int(times[i]) + d
        labels.append((due, group, ids[i], t, label))
        if twice[i]:
            labels.append((due + 2.0, "again", ids[i], t, label))
        window = int(times[i]) - int(times[i]) % W
        cell = expected.labelled[(model, str(version[i]), window)]
        cell[0] += 1
        cell[1] += label
    expected.labels_sent += len(labels)
    unlabelled += [(model, ids[i]) for i in np.flatnonzero(~chosen)[:4].tolist()]
    return _label_messages(plan, model, labels)


def _label_messages(plan: TrafficPlan, model: str,
                    labels: list[tuple[float, str, str, int, int]]) -> list[Message]:
    labels.sort()
    if plan.wire == "single":
        return [Message("labels", model.encode(), orjson.dumps(
            {"type": "label", "model": model, "request_id": rid, "event_time": t,
             "label": label}), due) for due, _, rid, t, label in labels]
    batches: defaultdict[tuple[int, str], list[tuple[float, str, str, int, int]]] = \
        defaultdict(list)
    for item in labels:  # one batch per wall second, and per kind of label
        batches[(int(item[0]), item[1])].append(item)
    out = []
    for group in batches.values():
        doc = {"type": "label_batch", "model": model, "request_id": [g[2] for g in group],
               "event_time": [g[3] for g in group], "label": [g[4] for g in group]}
        out.append(Message("labels", model.encode(), orjson.dumps(doc),
                           min(g[0] for g in group) if group[0][1] == "early"
                           else max(g[0] for g in group)))
    return out


def _late(plan: TrafficPlan, model: str, rel: np.ndarray, dues: np.ndarray, t0: int,
          expected: Expected) -> list[Message]:
    """Single events sent once their window has long closed: late on purpose."""
    if plan.live:
        return []
    out = []
    for j in range(plan.late_per_model):
        after = np.flatnonzero(rel >= (4 + j) * W)  # window 1 + j closed 2 windows ago
        if not len(after):
            continue
        t = t0 + (1 + j) * W + 1234
        doc = {"type": "prediction", "model": model, "version": "v1",
               "request_id": f"late-{model}-{j}", "event_time": t,
               "features": {"f0": 1.0, "c0": "a"}, "score": 0.5, "prediction": 1}
        expected.late[(model, "v1", t - t % W)] += 1
        out.append(Message("predictions", model.encode(), orjson.dumps(doc),
                           float(dues[after[0]]) + 0.001))
    return out


def _telemetry(plan: TrafficPlan, t0: int, duration: int, pace: float,
               expected: Expected) -> list[Message]:
    """One sample every 5 s per host (live: every second, well inside the worker's idle
    close), two GPUs each; h0's gpu0 runs hot in windows 2-3."""
    out = []
    interval = 1000 if plan.live else 5000
    for h, host in enumerate(HOSTS):
        for k, rel in enumerate(range(0, duration, interval)):
            t = t0 + rel
            hot = host == "h0" and 2 <= rel // W <= 3
            gpus = [_gpu(g, 92 if hot and g == 0 else 50 + (k + g) % 15) for g in (0, 1)]
            metrics = HostMetrics(
                cpu_percent=float(10 + (k * 7 + h) % 80), cpu_percent_per_core=[],
                load_1m=1.0, load_5m=None, load_15m=None, memory_total_bytes=512 * GiB,
                memory_used_bytes=200 * GiB, memory_available_bytes=312 * GiB,
                memory_percent=39.0, swap_total_bytes=0, swap_used_bytes=0, swap_percent=0.0)
            sample = TelemetrySample(
                host=host, event_time=t, interval_seconds=interval / 1000, models=[MODELS[h]],
                gpu_source="nvml", gpu_error=None, gpus=gpus, host_metrics=metrics,
                processes=[], dropped=0)
            start = t - t % W
            expected.hosts[(host, start)] += 1
            for g in (0, 1):
                expected.gpus[(host, g, start)] += 1
            expected.samples += 1
            due = rel / 1000 * pace + (0.05 if plan.live else 0.0)
            out.append(Message("telemetry", sample.key, sample.to_json(), due))
    return out


def _gpu(index: int, temperature: int) -> GpuSample:
    return GpuSample(
        index=index, uuid=f"GPU-{index}", name="NVIDIA H100 80GB HBM3",
        utilization_gpu_percent=80, utilization_memory_percent=40,
        memory_used_bytes=40 * GiB, memory_total_bytes=80 * GiB, temperature_c=temperature,
        power_draw_w=400.0, power_limit_w=700.0, sm_clock_mhz=1980, memory_clock_mhz=2619,
        throttle_reasons=None, throttle_reason_names=[], ecc_volatile_corrected=0,
        ecc_volatile_uncorrected=0, xid_errors=[], pcie_tx_kb_per_s=100,
        pcie_rx_kb_per_s=200, processes=[GpuProcess(pid=1000 + index, used_memory_bytes=None)],
        error=None)


def _poison(plan: TrafficPlan, t0: int, duration: int, pace: float, expected: Expected,
            unlabelled: list[tuple[str, str]]) -> list[Message]:
    """Bad messages spread through the traffic; each must become one dead letter."""
    t = t0 + duration // 3
    pad = "x" * plan.oversize_bytes
    model, rid = unlabelled[0]
    bad: list[tuple[str, bytes, bytes]] = [
        ("predictions", b"m0", b'{"type": "prediction", "model": "m0", '),
        ("labels", b"m1", orjson.dumps({"type": "label", "model": "m1", "event_time": t,
                                        "label": 1})),
        ("predictions", b"m2", _big({"type": "prediction", "model": "m2", "version": "v1",
                                     "request_id": "big-m2", "event_time": t,
                                     "features": {"pad": pad}})),
    ]
    if plan.poison == "all":
        sample = orjson.loads(_telemetry(dataclasses.replace(plan, live=False), t, 5000, 1.0,
                                         Expected())[0].value)
        sample["gpus"][0]["name"] = pad
        bad += [
            ("labels", b"m1", b"\x00\xff not json"),
            ("telemetry", b"h0", b"[1, 2"),
            ("predictions", b"m3", orjson.dumps({"type": "surprise", "model": "m3"})),
            ("predictions", b"wrong-key", orjson.dumps(
                {"type": "prediction", "model": "m3", "version": "v1", "request_id": "k",
                 "event_time": t, "features": {"f0": 1.0}})),
            ("predictions", b"m3", orjson.dumps(
                {"type": "prediction_batch", "model": "m3", "version": "v1",
                 "request_id": ["p1", "p2"], "event_time": [t, t], "features": {"f0": [1.0]}})),
            ("labels", b"m2", orjson.dumps(
                {"type": "label_batch", "model": "m2", "request_id": ["q1", "q2"],
                 "event_time": [t], "label": [1, 0]})),
            ("labels", model.encode(), _big({"type": "label", "model": model,
                                             "request_id": rid, "event_time": t,
                                             "label": pad})),
            ("telemetry", b"h1", _big({**sample, "host": "h1"})),
            ("predictions", b"m1", orjson.dumps(
                {"type": "prediction", "model": "m1", "version": "v1", "request_id": "nan",
                 "event_time": t, "features": {"f0": "NaN-as-text", "f1": [1]}})),
        ]
    out = []
    for i, (role, key, value) in enumerate(bad):
        expected.dead_letters[role] += 1
        due = (0.2 + 0.6 * i / len(bad)) * duration / 1000 * pace
        out.append(Message(role, key, value, due))
    return out


def _big(doc: dict[str, Any]) -> bytes:
    value = orjson.dumps(doc)
    _OVERSIZE.add(value)
    return value


# --------------------------------------------------------------------------- clients


class TrafficThread(threading.Thread):
    """Sends the messages at their due times from its own event loop, as a foreign
    producer would; ``error`` says why it stopped early."""

    def __init__(self, settings: Settings, messages: list[Message],
                 wall_start: float | None = None) -> None:
        super().__init__(name="chaos-traffic", daemon=True)
        self.settings = settings
        self.messages = messages
        #: Live traffic: due times count from this wall-clock time (the traffic's t0).
        self.wall_start = wall_start
        self.error: str | None = None
        self.started_at = time.monotonic()

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except Exception as exc:  # noqa: BLE001 - reported in the row, not raised in a thread
            self.error = f"{type(exc).__name__}: {exc}"

    async def _produce(self) -> None:
        topics = {"predictions": self.settings.predictions_topic,
                  "labels": self.settings.labels_topic,
                  "telemetry": self.settings.telemetry_topic}
        largest = max(len(m.value) for m in self.messages)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, linger_ms=5,
            max_request_size=largest + 1024 * 1024, request_timeout_ms=180_000)
        await producer.start()
        try:
            self.started_at = time.monotonic()
            if self.wall_start is not None:
                self.started_at += self.wall_start - time.time()
            sent = []
            for m in self.messages:
                wait = m.due - (time.monotonic() - self.started_at)
                if wait > 0:
                    await asyncio.sleep(wait)
                sent.append(await producer.send(topics[m.role], m.value, key=m.key))
            await producer.flush()
            for future in sent:
                await future
        finally:
            await producer.stop()


class ClickHouseReader:
    """Plain HTTP, like any client of the tables would."""

    def __init__(self, url: str, database: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 8123
        self.database = database

    def rows(self, sql: str) -> list[list[Any]]:
        """Result rows; [] while the database or table does not exist yet."""
        params = urlencode({"database": self.database, "default_format": "JSONCompact",
                            "output_format_json_quote_64bit_integers": 0})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            connection.request("POST", f"/?{params}", body=sql.encode())
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            if b"UNKNOWN_DATABASE" in body or b"UNKNOWN_TABLE" in body:
                return []
            raise RuntimeError(f"ClickHouse answered {response.status}: {body[:300]!r}")
        data: list[list[Any]] = orjson.loads(body)["data"]
        return data


async def _consumer_lag(settings: Settings) -> dict[str, int]:
    """Messages of each source topic the worker group has not committed yet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)
               for topic in (settings.predictions_topic, settings.labels_topic,
                             settings.telemetry_topic)]
        ends = await consumer.end_offsets(tps)  # high watermarks (tansu fix installed)
        lag: Counter[str] = Counter()
        for tp in tps:
            lag[tp.topic] += max(0, ends[tp] - (await consumer.committed(tp) or 0))
        return dict(lag)
    finally:
        await consumer.stop()


def consumer_lag(settings: Settings) -> dict[str, int] | None:
    async def bounded() -> dict[str, int]:
        async with asyncio.timeout(20):
            return await _consumer_lag(settings)
    try:
        return asyncio.run(bounded())
    except Exception:  # noqa: BLE001 - broker away or group unknown: not caught up
        return None


async def _alert_messages(settings: Settings) -> list[tuple[str, str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.alerts_topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found: list[tuple[str, str]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        doc = orjson.loads(record.value)
                        found.append((doc["id"], doc["state"]))
        return found
    finally:
        await consumer.stop()


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
            references_topic=f"chaos-{tag}-references", clickhouse_database=f"chaos_{tag}",
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
            )
        except (OSError, RuntimeError, http.client.HTTPException) as exc:
            return ("unreadable", str(exc)[:80])

    def _complete(self, snapshot: tuple[Any, ...]) -> bool:
        try:
            return bool(snapshot[0][0][0] >= len(self.expected.features)
                        and snapshot[2][0][0] >= len(self.expected.gpus)
                        and snapshot[3][0][0] >= len(self.expected.hosts))
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
            settle = 3.0 if self._complete(snapshot) else 2 * self.scale.idle_close_s + 10.0
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
        gpus = {(h, g, s): (n,) for h, g, s, n in q(
            "SELECT host, gpu_index, toUnixTimestamp64Milli(window_start), samples "
            "FROM gpu_windows FINAL")}
        hosts = {(h, s): (n,) for h, s, n in q(
            "SELECT host, toUnixTimestamp64Milli(window_start), samples FROM host_windows FINAL")}
        kinds = {"features": compare({k: tuple(v) for k, v in e.features.items()}, features),
                 "labels": compare({k: tuple(v) for k, v in e.labelled.items()}, labelled),
                 "gpus": compare({k: (v,) for k, v in e.gpus.items()}, gpus),
                 "hosts": compare({k: (v,) for k, v in e.hosts.items()}, hosts)}
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
                  self.settings.telemetry_topic: "telemetry"}
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


async def _committed_sum(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(settings.predictions_topic, p))
                    or 0 for p in range(settings.partitions)])
    finally:
        await consumer.stop()


def _committed_any(settings: Settings) -> bool:
    async def bounded() -> int:
        async with asyncio.timeout(10):
            return await _committed_sum(settings)
    try:
        return asyncio.run(bounded()) > 0
    except Exception:  # noqa: BLE001 - no group yet
        return False


def compare(expected: dict[Any, tuple[int, ...]], got: dict[Any, tuple[int, ...]]
            ) -> dict[str, Any]:
    """Cells sent vs stored: lost (below), double (above, or never sent), missing."""
    out: dict[str, Any] = {"cells": len(expected), "lost": 0, "double": 0, "missing": 0,
                           "examples": []}
    for key in expected.keys() | got.keys():
        want, have = expected.get(key), got.get(key)
        if want == have:
            continue
        if have is None:
            verdict = "missing"
        elif want is None or have > want:
            verdict = "double"
        else:
            verdict = "lost"
        out[verdict] += 1
        if len(out["examples"]) < 30:
            out["examples"].append({"cell": "/".join(map(str, key)), "sent": want, "got": have})
    return out


# --------------------------------------------------------------------------- experiments


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
