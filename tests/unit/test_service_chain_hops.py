"""Service chains from spans: per-message partials, their merge per partition, exactly-once
application of forwarded parts, checkpoints, and the judging of hops."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models import state_codec
from driftline.models.alerting.alerts import Alert
from driftline.models.alerting.rules import RulesConfig
from driftline.models.traces.explain import board_records
from driftline.models.traces.hops import (
    CALL,
    MAX_PEERS,
    OPERATION,
    OTHER,
    HopPartition,
    HopResult,
    HopRow,
    Part,
    partials,
)
from driftline.models.traces.spans import SpanBatch, decode_otlp_proto
from driftline.streams.demo.traces import DATABASE, FEATURE_STORE, ChainTracer
from driftline.streams.model_overrides import ModelOverrides
from driftline.streams.settings import Settings
from driftline.streams.worker.hop_board import HopBoard

T0 = 1_764_230_400_000  # 2025-11-27 08:00 UTC
W = 60_000
RULES = RulesConfig.default()


def parts_of(message: bytes, source: str, offset: int) -> list[Part]:
    batch = decode_otlp_proto(message)
    return [Part(source, offset, service, latest, tuple(ps))
            for service, (latest, ps) in partials(batch, W).items()]


class Feed:
    """Applies messages to a partition the way the forwarder and the processor would."""

    def __init__(self, partition: HopPartition) -> None:
        self.partition = partition
        self.offset = 0
        self.source_offset = 0

    def message(self, message: bytes) -> HopResult:
        items: list[tuple[int, Part | int]] = []
        for part in parts_of(message, "otlp_spans/0", self.source_offset):
            items.append((self.offset, part))
            self.offset += 1
        self.source_offset += 1
        return self.partition.apply(items)

    def watermark(self, at: int) -> HopResult:
        self.offset += 1
        return self.partition.apply([(self.offset - 1, at)])


def run_chain(windows: int, slow: set[int], calls_per_tick: int = 10,
              partition: HopPartition | None = None) -> tuple[list[HopResult], ChainTracer]:
    tracer = ChainTracer("ranker", seed=3)
    feed = Feed(partition or HopPartition(RULES, W, 10_000))
    results = []
    for w in range(windows):
        for tick in range(12):
            start = T0 + w * W + tick * 5_000
            results.append(feed.message(tracer.record(start, start + 5_000, calls_per_tick,
                                                      slow=w in slow)))
    results.append(feed.watermark(T0 + (windows + 1) * W))
    return results, tracer


def test_sdk_spans_give_operations_and_hops_per_service() -> None:
    tracer = ChainTracer("ranker", seed=1)
    message = tracer.record(T0, T0 + 5_000, 200, slow=True)
    by_service = partials(decode_otlp_proto(message), W)
    assert sorted(by_service) == ["feature-store", "ranker"]
    ranker = {(p.kind, p.peer): p for p in by_service["ranker"][1]}
    assert sorted(ranker) == [(CALL, FEATURE_STORE), (CALL, DATABASE), (OPERATION, "predict")]
    assert all(p.calls == 200 for p in ranker.values())
    # The store's own SERVER span is the callee's side of the ranker's named call: no second hop.
    store = by_service["feature-store"][1]
    assert [(p.kind, p.peer, p.calls) for p in store] == [(OPERATION, "get_features", 200)]
    assert ranker[(CALL, FEATURE_STORE)].errors == store[0].errors > 0  # the timeouts
    assert ranker[(CALL, DATABASE)].errors == 0
    assert T0 + 4_000 < by_service["ranker"][0] < T0 + 5_500  # the last span start


def synthetic_batch(durations: list[float], errors: list[bool], starts: list[int],
                    callees: list[int]) -> SpanBatch:
    n = len(durations)
    return SpanBatch(
        trace_id=[f"{i + 1:032x}" for i in range(n)], span_id=[f"{i + 1:016x}" for i in range(n)],
        parent_span_id=["00000000000000aa"] * n, service=["api"] * n, name=["call"] * n,
        kind=["CLIENT"] * n, peer_service=[f"db{c}" for c in callees],
        start_ms=np.array(starts, dtype=np.int64), duration_ms=np.array(durations),
        error=np.array(errors, dtype=bool))


spans = st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.01, 5_000), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.integers(T0, T0 + 3 * W - 1), min_size=n, max_size=n),
    st.lists(st.integers(0, 2), min_size=n, max_size=n),
    st.lists(st.integers(0, n), max_size=4)))


@settings(max_examples=60, deadline=None)
@given(spans)
def test_split_messages_merge_to_the_whole(case: tuple[list[float], list[bool], list[int],
                                                        list[int], list[int]]) -> None:
    durations, errors, starts, callees, cuts = case
    # Lateness past the spans' 3 windows: the parts may come in any order of event time.
    whole = HopPartition(RULES, W, 5 * W)
    pieces = HopPartition(RULES, W, 5 * W)
    batch = synthetic_batch(durations, errors, starts, callees)
    bounds = [0, *sorted(set(cuts)), len(durations)]
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        if hi > lo:
            sub = synthetic_batch(durations[lo:hi], errors[lo:hi], starts[lo:hi], callees[lo:hi])
            parts.append(sub)
    whole.apply([(0, Part("t/0", 0, "api", max(starts),
                                         tuple(partials(batch, W)["api"][1])))])
    for i, sub in enumerate(parts):
        pieces.apply([(i, Part("t/0", i, "api", max(sub.start_ms.tolist()),
                                             tuple(partials(sub, W)["api"][1])))])
    end = T0 + 10 * W  # past every window's end plus the lateness
    def key(row: HopRow) -> tuple[str, int]:
        return row.peer, row.window_start

    a = sorted(whole.apply([(100, end)]).rows, key=key)
    b = sorted(pieces.apply([(100, end)]).rows, key=key)
    assert [(r.peer, r.window_start, r.calls, r.errors, r.latency_p95_ms) for r in a] == \
        [(r.peer, r.window_start, r.calls, r.errors, r.latency_p95_ms) for r in b]
    assert sum(r.calls for r in a) == len(durations)
    for row in a:  # quantiles within the sketch's 1 % of numpy's
        chosen = [d for d, s, c in zip(durations, starts, callees, strict=True)
                  if f"db{c}" == row.peer and s - s % W == row.window_start]
        exact = np.quantile(chosen, [0.5, 0.95, 0.99], method="lower")
        got = [row.latency_p50_ms, row.latency_p95_ms, row.latency_p99_ms]
        assert np.allclose(got, exact, rtol=0.0101)
        assert row.latency_mean_ms == pytest.approx(float(np.mean(chosen)))


def test_a_part_forwarded_twice_counts_once() -> None:
    tracer = ChainTracer("ranker", seed=2)
    message = tracer.record(T0, T0 + 5_000, 30)
    partition = HopPartition(RULES, W, 10_000)
    first = parts_of(message, "otlp_spans/0", 7)
    # The forwarder restarted and sent the same source offset again, after its other parts.
    partition.apply([(i, p) for i, p in enumerate(first)])
    partition.apply([(10 + i, p) for i, p in enumerate(first)])
    older = parts_of(tracer.record(T0, T0 + 5_000, 30), "otlp_spans/0", 6)
    partition.apply([(20, older[0])])  # an older source offset: already past
    other = parts_of(tracer.record(T0, T0 + 5_000, 5), "otlp_spans/1", 6)
    partition.apply([(30 + i, p) for i, p in enumerate(other)])  # another source partition
    rows = partition.apply([(40, T0 + 3 * W)]).rows
    calls = {(r.service, r.peer): r.calls for r in rows}
    assert calls[("ranker", FEATURE_STORE)] == 35
    assert calls[("feature-store", "get_features")] == 35


def test_a_checkpoint_resumes_exactly() -> None:
    straight, _ = run_chain(12, slow={7, 8, 9})
    resumed_partition = HopPartition(RULES, W, 10_000)
    tracer = ChainTracer("ranker", seed=3)
    feed = Feed(resumed_partition)
    results = []
    for w in range(12):
        for tick in range(12):
            start = T0 + w * W + tick * 5_000
            results.append(feed.message(tracer.record(start, start + 5_000, 10,
                                                      slow=w in {7, 8, 9})))
            if tick == 5 and w in (3, 8):  # a restart from the checkpoint mid-window
                state = state_codec.decode(state_codec.encode(feed.partition.to_state()))
                feed.partition = HopPartition.from_state(state, RULES, W, 10_000)
    results.append(feed.watermark(T0 + 13 * W))

    def flat(rs: list[HopResult]) -> tuple[list[object], list[Alert]]:
        return ([dataclasses.astuple(r) for x in rs for r in x.rows],
                [a for x in rs for a in x.alerts])

    assert flat(results) == flat(straight)


def test_a_slow_hop_opens_an_incident_that_names_it_and_resolves() -> None:
    results, _ = run_chain(16, slow={7, 8, 9})
    alerts = [a for r in results for a in r.alerts]
    assert [(a.state, a.severity, a.feature, a.metric) for a in alerts] == [
        ("open", "critical", FEATURE_STORE, "hop_latency_p95_ratio"),
        ("resolved", "critical", FEATURE_STORE, "hop_latency_p95_ratio")]
    opened = alerts[0]
    assert opened.dedup_key == "chain:ranker::feature-store:hop_latency_p95_ratio"
    assert opened.window_start == T0 + 8 * W  # the second slow window
    assert opened.summary.startswith("service chain ranker → feature-store: degraded (")
    assert "ms in its first windows, 114 of 120 calls slower than that)" in opened.summary


def test_a_steady_chain_raises_nothing_and_a_failing_hop_does() -> None:
    results, _ = run_chain(40, slow=set(), calls_per_tick=5)
    assert [a for r in results for a in r.alerts] == []
    partition = HopPartition(RULES, W, 10_000, model_of={"ranker": "churn"})
    feed = Feed(partition)
    tracer = ChainTracer("ranker", seed=5)
    alerts: list[Alert] = []
    for w in range(10):
        for tick in range(12):
            start = T0 + w * W + tick * 5_000
            message = tracer.record(start, start + 5_000, 10)
            if w >= 6:  # every call to postgres fails from window 6
                message = failing(message, DATABASE)
            alerts += feed.message(message).alerts
    alerts += feed.watermark(T0 + 12 * W).alerts
    assert [(a.state, a.severity, a.dedup_key, a.model) for a in alerts] == [
        ("open", "critical", "chain:churn::postgres:hop_error_increase", "churn")]
    assert "120 of 120 calls failed (100.0%) vs 0.0% in its first windows" in alerts[0].summary


def failing(message: bytes, callee: str) -> bytes:
    """``message`` with every CLIENT span calling ``callee`` marked ERROR."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest.FromString(message)
    for resource in request.resource_spans:
        for scope in resource.scope_spans:
            for span in scope.spans:
                if any(a.key == "peer.service" and a.value.string_value == callee
                       for a in span.attributes):
                    span.status.code = 2
    return bytes(request.SerializeToString())


def test_a_late_part_is_counted_not_merged() -> None:
    partition = HopPartition(RULES, W, 10_000)
    tracer = ChainTracer("ranker", seed=4)
    feed = Feed(partition)
    feed.message(tracer.record(T0, T0 + 5_000, 10))
    feed.watermark(T0 + 2 * W + 10_000)  # window 0 (and 1) closed
    late = feed.message(tracer.record(T0 + 1_000, T0 + 2_000, 4))
    # 4 requests: per request 2 operations (predict, get_features) and 2 hops
    assert late.late == 16 and partition.late == 16
    assert late.rows == []


def board(models: dict[str, ModelOverrides] | None = None) -> HopBoard:
    return HopBoard(Settings().replace(models=models or {}))


def latency_alert(model: str, state: str = "open") -> Alert:
    return Alert("id", f"service:{model}:v1:latency", state, "critical", model, "v1",  # type: ignore[arg-type]
                 "latency", "latency_p95_ratio", 3.0, 2.0, T0 + 8 * W, T0 + 9 * W, T0 + 7 * W,
                 T0 + 9 * W, "slow")


def publish(hops: HopBoard, results: list[HopResult]) -> None:
    for offset, result in enumerate(results):
        for service, windows in board_records(result.rows).items():
            hops._apply(service.encode(), orjson.dumps({"service": service, "hops": windows}),
                        offset)


def test_the_board_explains_a_models_latency_alert_from_published_hops() -> None:
    results, _ = run_chain(12, slow={7, 8, 9})
    hops = board({"churn": ModelOverrides(service="ranker")})
    publish(hops, results)

    def explain(alert: Alert) -> str:
        return asyncio.run(hops.explain(alert))

    text = explain(latency_alert("churn"))
    assert text.startswith("slowest hop downstream: ranker → feature-store, p95 ")
    assert "usual" in text and DATABASE not in text
    assert explain(latency_alert("churn", "resolved")) == ""
    assert explain(latency_alert("ranker")) == text  # a service named as its model
    assert explain(latency_alert("fraud")) == ""  # nothing traced


def test_the_board_waits_a_moment_for_the_hops_of_the_alerts_windows() -> None:
    """The service-chain processor may be a moment behind the one whose latency alert
    opens: the explanation waits for the hops of the alert's windows."""
    results, _ = run_chain(12, slow={7, 8, 9})
    hops = board({"churn": ModelOverrides(service="ranker")})
    cut = next(i for i, r in enumerate(results)
               if any(row.window_start == T0 + 7 * W for row in r.rows))
    publish(hops, results[:cut])  # windows up to 6: the slow ones not yet in

    async def late_then_explain() -> str:
        async def arrive() -> None:
            await asyncio.sleep(0.3)
            publish(hops, results)
        arriving = asyncio.create_task(arrive())
        text = await hops.explain(latency_alert("churn"))
        await arriving
        return text

    assert asyncio.run(late_then_explain()).startswith("slowest hop downstream: ranker → ")
    stale = board({"churn": ModelOverrides(service="ranker")})
    stale.wait_seconds = 0.2
    publish(stale, results[:cut])
    # Gave up waiting: nothing is known of the incident's windows, so nothing is said.
    assert asyncio.run(stale.explain(latency_alert("churn"))) == ""


def test_a_source_partition_behind_the_others_is_not_late() -> None:
    """The forwarder reads the traces topic's partitions at their own pace: after their first
    messages one runs five windows ahead of the other, and nothing of the one behind is
    late."""
    tracer = ChainTracer("ranker", seed=6)
    partition = HopPartition(RULES, W, 10_000)
    ahead = [parts_of(tracer.record(T0 + w * W, T0 + (w + 1) * W, 10), "otlp_spans/0", w)
             for w in range(8)]
    behind = [parts_of(tracer.record(T0 + w * W, T0 + (w + 1) * W, 10), "otlp_spans/1", w)
              for w in range(8)]
    offset, rows = 0, []
    for w in range(8):
        for part in ahead[w] + (behind[0] if w == 0 else behind[w - 5] if w > 5 else []):
            rows += partition.apply([(offset, part)]).rows
            offset += 1
    for w in range(3, 8):
        for part in behind[w]:
            rows += partition.apply([(offset, part)]).rows
            offset += 1
    rows += partition.apply([(offset, T0 + 20 * W)]).rows
    assert partition.late == 0
    calls = [r.calls for r in rows if r.peer == FEATURE_STORE]
    assert calls == [20] * 8


def test_windows_closed_together_are_judged_one_after_another() -> None:
    """A backlog read in one batch closes every window at once: each is still judged against
    the baseline the windows before it made."""
    tracer = ChainTracer("ranker", seed=3)
    partition = HopPartition(RULES, W, 10_000)
    parts: list[Part | int] = []
    for w in range(12):
        for tick in range(12):
            start = T0 + w * W + tick * 5_000
            message = tracer.record(start, start + 5_000, 10, slow=w in {7, 8, 9})
            parts += parts_of(message, "otlp_spans/0", w * 12 + tick)
    items = list(enumerate(parts))
    result = partition.apply([*items, (len(items), T0 + 20 * W)])
    hop = [r for r in result.rows if r.peer == FEATURE_STORE]
    assert [r.baseline_p95_ms is not None for r in hop] == [False] * 5 + [True] * 7
    assert [(a.state, a.window_start) for a in result.alerts] == [("open", T0 + 8 * W)]


def test_span_names_with_ids_in_them_do_not_grow_the_state() -> None:
    n = MAX_PEERS + 50
    batch = SpanBatch(
        trace_id=[f"{i + 1:032x}" for i in range(n)], span_id=[f"{i + 1:016x}" for i in range(n)],
        parent_span_id=[""] * n, service=["api"] * n,
        name=[f"GET /users/{i}" for i in range(n)], kind=["SERVER"] * n, peer_service=[""] * n,
        start_ms=np.full(n, T0, dtype=np.int64), duration_ms=np.ones(n), error=np.zeros(n, bool))
    partition = HopPartition(RULES, W, 10_000)
    partition.apply([(0, Part("t/0", 0, "api", T0, tuple(partials(batch, W)["api"][1])))])
    rows = partition.apply([(1, T0 + 5 * W)]).rows
    assert len(rows) == MAX_PEERS + 1
    assert {r.peer: r.calls for r in rows}[OTHER] == 50
    assert sum(r.calls for r in rows) == n
