"""The chaos suite's traffic and its oracle: the deterministic messages an experiment sends
(predictions, labels, telemetry, OpenTelemetry traces, late events and poison), what
ClickHouse must then hold, and ``compare``, which counts the cells lost, doubled or
missing."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from driftline.models.telemetry.sample import (
    GpuProcess,
    GpuSample,
    HostMetrics,
    TelemetrySample,
)
from driftline.streams.demo.traces import DATABASE, FEATURE_STORE, ChainTracer

W = 60_000  # the default window, ms
LATENESS = 10_000  # the default allowed lateness, ms
T0 = 1_764_230_400_000  # a window boundary: 2025-11-27 08:00 UTC
MODELS = ("m0", "m1", "m2", "m3")
NUMERIC = tuple(f"f{i}" for i in range(9))
CATEGORICAL = ("c0", "c1", "c2", "c3")
OUTPUTS = ("output.score", "output.prediction", "service.latency_ms", "service.status")
VOCAB = ("a", "b", "c", "d", "e", "f")
HOSTS = ("h0", "h1")
ROLES = ("predictions", "labels", "telemetry", "traces")
GiB = 1024**3
#: The traced service: each of its requests is a ``predict`` with a call to the feature
#: store (its ``get_features``) and one to the database (see ``ChainTracer``).
TRACED = "chaos-ranker"
#: Trace messages go to the traces topic's partitions in turn (no key), as many as the lab's.
TRACE_PARTITIONS = 4
#: A trace message's requests start this long before the end of its window at the latest:
#: every span of a request (the database call starts after the feature store answered,
#: tens of ms later) then starts in the request's window.
TRACE_MARGIN = 1_000
#: ``ChainTracer``'s operations: the traced service's, and the feature store's.
PREDICT, GET_FEATURES = "predict", "get_features"

FeatureKey = tuple[str, str, str, int]  # model, version, feature, window start (ms)
WindowKey = tuple[str, str, int]  # model, version, window start
GpuKey = tuple[str, int, int]  # host, GPU index, window start
HostKey = tuple[str, int]  # host, window start
CallKey = tuple[str, str, int]  # caller, callee, window start
OperationKey = tuple[str, str, int]  # service, operation, window start


# --------------------------------------------------------------------------- traffic


@dataclasses.dataclass(frozen=True)
class Message:
    role: str  # predictions | labels | telemetry | traces
    key: bytes | None
    value: bytes
    due: float  # seconds after production starts
    #: The topic's partition (modulo its partition count), None: the partitioner's (by key).
    partition: int | None = None


@dataclasses.dataclass
class Expected:
    """What the traffic makes ClickHouse hold, computed from what was sent."""

    events: int = 0
    labels_sent: int = 0
    samples: int = 0
    trace_requests: int = 0
    features: defaultdict[FeatureKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))  # [count, missing_count]
    labelled: defaultdict[WindowKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))  # [labelled, positives]
    #: Per window, the business outcome "revenue" (whole numbers): [reported, total].
    outcomes: defaultdict[WindowKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))
    gpus: Counter[GpuKey] = dataclasses.field(default_factory=Counter)
    hosts: Counter[HostKey] = dataclasses.field(default_factory=Counter)
    #: ``service_calls`` and ``service_operations``: [calls, errors].
    calls: defaultdict[CallKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))
    operations: defaultdict[OperationKey, list[int]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: [0, 0]))
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
    outcome_share: float = 0.2
    late_per_model: int = 1
    trace_requests: int = 20  # per trace message (one per 5 s of event time, live: 1 s)


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
    messages += _traces(plan, t0, duration, pace, expected)
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
    out += _outcomes(rng, plan, model, ids, times, rel, version, dues, pace, expected)
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


def _outcomes(rng: np.random.Generator, plan: TrafficPlan, model: str, ids: list[str],
              times: np.ndarray, rel: np.ndarray, version: np.ndarray, dues: np.ndarray,
              pace: float, expected: Expected) -> list[Message]:
    """A "revenue" outcome for a share of the predictions, seconds after; some before their
    prediction, some sent twice, some corrected by a later report (the later one counts)."""
    n = len(ids)
    chosen = np.flatnonzero(rng.random(n) < plan.outcome_share).tolist()
    kind, value, fixed = rng.random(n), rng.integers(1, 100, n), rng.integers(100, 200, n)
    delay = rng.integers(1_000, 20_000, n) // (4 if plan.live else 1)
    reports: list[tuple[float, str, str, int, int]] = []  # due, group, request id, time, value
    for i in chosen:
        if kind[i] < 0.1:  # before its prediction
            due, t = float(dues[i]) - 0.01, int(times[i]) + 1000
            reports.append((due, "early", ids[i], t, int(value[i])))
        else:
            d = int(delay[i])
            due, t = (rel[i] + d) / 1000 * pace + (0.05 if plan.live else 0.0), int(times[i]) + d
            reports.append((due, "", ids[i], t, int(value[i])))
        total = int(value[i])
        if 0.1 <= kind[i] < 0.15:  # the same again
            reports.append((due + 2.0, "again", ids[i], t, int(value[i])))
        elif 0.15 <= kind[i] < 0.2:  # corrected later in the log
            reports.append((due + 2.0, "fixed", ids[i], t + 500, int(fixed[i])))
            total = int(fixed[i])
        cell = expected.outcomes[(model, str(version[i]), int(times[i]) - int(times[i]) % W)]
        cell[0] += 1
        cell[1] += total
    expected.labels_sent += len(reports)
    reports.sort()
    if plan.wire == "single":
        return [Message("labels", model.encode(), orjson.dumps(
            {"type": "outcome", "model": model, "request_id": rid, "event_time": t,
             "outcomes": {"revenue": v}}), due) for due, _, rid, t, v in reports]
    batches: defaultdict[tuple[int, str], list[tuple[float, str, str, int, int]]] = \
        defaultdict(list)
    for item in reports:  # one batch per wall second, and per kind of report
        batches[(int(item[0]), item[1])].append(item)
    return [Message("labels", model.encode(), orjson.dumps(
        {"type": "outcome_batch", "model": model, "request_id": [g[2] for g in group],
         "event_time": [g[3] for g in group], "outcomes": {"revenue": [g[4] for g in group]}}),
        min(g[0] for g in group) if group[0][1] == "early" else max(g[0] for g in group))
        for group in batches.values()]


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


def _traces(plan: TrafficPlan, t0: int, duration: int, pace: float,
            expected: Expected) -> list[Message]:
    """Spans of ``TRACED`` and the feature store it calls, recorded with the OpenTelemetry
    SDK (``ChainTracer``): one OTLP protobuf message per 5 s of event time (live: per
    second), without a key and to the traces topic's partitions in turn, as the Collector's
    Kafka exporter writes them; sent once its last request has started. In every fourth
    window (live: every fourth 5 s) the feature store is slow and a few of its calls time
    out (errors).

    None is late by design: a window closes once every source partition's largest span
    start has passed its end plus the lateness (70 s of event time), and partitions taken
    in turn stay within 20 s of each other, each in event-time order; a message's spans all
    start in one window (``TRACE_MARGIN``); and the worker's watermark, which closes a
    quiet partition's open windows, is for a partition without messages for the idle
    close (5 s or more), while these come every 5 s x pace of wall time (under a second at
    both scales), live every second: as for the models, an outage must not pass for quiet.
    """
    tick = 1000 if plan.live else 5000
    spell = 5000 if plan.live else W  # slow in every fourth of these
    tracer = ChainTracer(TRACED, seed=plan.seed)
    out: list[Message] = []
    with _seeded_ids(plan.seed):
        for a in range(0, duration, tick):
            lo, hi = t0 + a, t0 + min(a + tick, duration)
            while lo < hi:  # live: a tick across a window's end is recorded in two parts
                window = lo - lo % W
                cut = min(hi, window + W)
                end = cut - TRACE_MARGIN if cut == window + W else cut
                if end > lo:
                    calls, timeouts = tracer.calls, tracer.timeouts
                    value = tracer.record(lo, end, plan.trace_requests,
                                          slow=(lo - t0) // spell % 4 == 2)
                    n, errors = tracer.calls - calls, tracer.timeouts - timeouts
                    for cell, failed in ((expected.calls[(TRACED, FEATURE_STORE, window)], errors),
                                         (expected.calls[(TRACED, DATABASE, window)], 0),
                                         (expected.operations[(TRACED, PREDICT, window)], 0),
                                         (expected.operations[(FEATURE_STORE, GET_FEATURES,
                                                               window)], errors)):
                        cell[0] += n
                        cell[1] += failed
                    expected.trace_requests += n
                    due = (end - t0) / 1000 * pace + (0.05 if plan.live else 0.0)
                    out.append(Message("traces", None, value, due,
                                       partition=len(out) % TRACE_PARTITIONS))
                lo = cut
    return out


@contextlib.contextmanager
def _seeded_ids(seed: int) -> Iterator[None]:
    """Trace and span ids from the seed: the SDK draws them from the ``random`` module."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


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
    bad: list[tuple[str, bytes | None, bytes]] = [
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
            # OTLP/JSON on a topic of OTLP protobuf (an exporter's encoding misconfigured).
            ("traces", None, orjson.dumps({"resourceSpans": []})),
            # (A value of the wrong type is not poison: it is counted as invalid and its
            # message kept; a features field that is not an object cannot be read.)
            ("predictions", b"m1", orjson.dumps(
                {"type": "prediction", "model": "m1", "version": "v1", "request_id": "nan",
                 "event_time": t, "features": ["f0", "NaN-as-text"]})),
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


# --------------------------------------------------------------------------- oracle


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
