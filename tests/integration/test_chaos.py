"""The chaos suite's short form (benchmarks/chaos.py) against real ``driftline worker``
processes: after each disruption every cell ClickHouse holds equals what was sent, each bad
message is one dead letter, no alert state is written twice, and the worker is alive.

Three experiments run with the rest of the integration tests (about two minutes
together); the other six of the short form (another four minutes or so) run with
``pytest -m chaos``, or all nine at once with ``python benchmarks/chaos.py --short``.
The suite starts its own broker and ClickHouse: it pauses and kills them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
_SPEC = importlib.util.spec_from_file_location("benchmark_chaos", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
chaos = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = chaos  # dataclasses look their module up there
_SPEC.loader.exec_module(chaos)

#: One crash storm, one sink outage, bad input: each run on every CI pass.
EVERY_RUN = ("kill_storm_envelopes", "clickhouse_restart", "oversize_and_poison")
ON_REQUEST = tuple(name for name in chaos.EXPERIMENTS if name not in EVERY_RUN)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chaos.Lab(tmp_path_factory.mktemp("chaos"), chaos.SHORT) as lab:
        yield lab


def check(lab: Any, name: str) -> None:
    row = chaos.run_experiment(lab, name, 0)
    shown = json.dumps(row.details, default=str)[:4000]
    assert (row.lost, row.double, row.missing) == (0, 0, 0), shown
    assert row.alive, row.details.get("log_lines")
    assert row.ok, f"{row.failures}: {shown}"


@pytest.mark.parametrize("name", EVERY_RUN)
def test_short_chaos(lab: Any, name: str) -> None:
    check(lab, name)


@pytest.mark.chaos
@pytest.mark.parametrize("name", ON_REQUEST)
def test_short_chaos_on_request(lab: Any, name: str) -> None:
    check(lab, name)


def test_the_oracle_counts_lost_double_and_missing_cells() -> None:
    result = chaos.compare({"a": (3, 1), "b": (2, 0), "c": (1, 0)},
                           {"a": (3, 1), "b": (4, 0), "d": (1, 0)})
    assert {k: result[k] for k in ("cells", "lost", "double", "missing")} == {
        "cells": 3, "lost": 0, "double": 2, "missing": 1}
    assert chaos.compare({"a": (3, 1)}, {"a": (2, 1)})["lost"] == 1


def test_traffic_is_deterministic_and_its_oracle_adds_up() -> None:
    plan = chaos.TrafficPlan(events=2000, windows=8, wire="envelopes", seconds=5.0,
                             max_message_bytes=256 * 1024, oversize_bytes=300_000, seed=3)
    messages, expected = chaos.make_traffic(plan, chaos.T0)
    again, _ = chaos.make_traffic(plan, chaos.T0)
    assert [m.value for m in messages] == [m.value for m in again]
    features = len(chaos.NUMERIC) + len(chaos.CATEGORICAL) + len(chaos.OUTPUTS)
    # m0 switches version half-way, on a window boundary: every window has one version.
    assert len(expected.features) == len(chaos.MODELS) * plan.windows * features
    assert sum(c for (_, _, f, _), (c, _) in expected.features.items() if f == "f0") == 2000
    assert sum(expected.late.values()) == len(chaos.MODELS)
    assert sum(expected.dead_letters.values()) == 3
    singles, expected_singles = chaos.make_traffic(
        chaos.dataclasses.replace(plan, wire="single"), chaos.T0)
    assert expected_singles.features == expected.features
    assert sum(m.role == "predictions" for m in singles) > 2000


@pytest.mark.parametrize("live", [False, True])
def test_the_trace_oracle_says_what_the_spans_say(live: bool) -> None:
    """Per caller x callee and service x operation x window, the calls and errors the
    oracle expects are those of the spans sent, read here with the OTLP definitions alone;
    the messages are deterministic and spread over the partitions in turn."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    plan = chaos.TrafficPlan(events=400, windows=8, wire="envelopes",
                             seconds=70.0 if live else 5.0, max_message_bytes=256 * 1024,
                             oversize_bytes=300_000, seed=5, live=live)
    t0 = chaos.T0 + (17_345 if live else 0)  # live: windows do not start with the traffic
    messages, expected = chaos.make_traffic(plan, t0)
    again, _ = chaos.make_traffic(plan, t0)
    traces = [m for m in messages if m.role == "traces"]
    assert [m.value for m in traces] == [m.value for m in again if m.role == "traces"]
    assert [m.partition for m in traces] == [i % 4 for i in range(len(traces))]
    assert all(m.key is None for m in traces)
    calls: dict[tuple[str, str, int], list[int]] = {}
    operations: dict[tuple[str, str, int], list[int]] = {}
    for m in traces:
        request = ExportTraceServiceRequest()
        request.ParseFromString(m.value)
        for rs in request.resource_spans:
            service = next(a.value.string_value for a in rs.resource.attributes
                           if a.key == "service.name")
            for span in (s for ss in rs.scope_spans for s in ss.spans):
                start = span.start_time_unix_nano // 1_000_000
                window = start - start % chaos.W
                if span.kind == span.SPAN_KIND_SERVER:
                    cell = operations.setdefault((service, span.name, window), [0, 0])
                else:
                    peer = next(a.value.string_value for a in span.attributes
                                if a.key == "peer.service")
                    cell = calls.setdefault((service, peer, window), [0, 0])
                cell[0] += 1
                cell[1] += span.status.code == span.status.STATUS_CODE_ERROR
    assert calls == dict(expected.calls)
    assert operations == dict(expected.operations)
    assert {k[:2] for k in calls} == {(chaos.TRACED, "feature-store"), (chaos.TRACED, "postgres")}
    assert sum(e for _, e in calls.values()) > 0  # the slow windows time out now and then
    windows = (plan.seconds * 1000 + 17_345) // chaos.W + 1 if live else plan.windows
    assert {k[2] for k in calls} == {chaos.T0 + i * chaos.W for i in range(int(windows))}
