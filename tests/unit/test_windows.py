"""Partition window state: numpy as the oracle, and results that do not depend on batching,
checkpoints or replays."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models.events.wire import EventBlock
from driftline.models.windows.feature_windows import (
    FeatureWindowRow,
    PartitionWindows,
    WindowConfig,
)

W = 1000
CONFIG = WindowConfig(window_ms=W, allowed_lateness_ms=200, histogram_bins=4,
                      edge_sample_size=50)


def block(times: list[int], model: str = "m", version: str = "v1",
          **features: list[Any]) -> EventBlock:
    kinds: dict[str, Any] = {}
    for name, column in features.items():
        present = [v for v in column if v is not None]
        kinds[name] = ("missing" if not present else
                       "categorical" if isinstance(present[0], str) else "numeric")
    return EventBlock("prediction", model, version, times, features=dict(features),
                      feature_kinds=kinds)


def watermark(t: int) -> EventBlock:
    return EventBlock("watermark", "", "", [t])


def run(messages: list[EventBlock], chunks: list[int] | None = None,
        checkpoint: bool = False) -> tuple[list[FeatureWindowRow], int]:
    """Apply messages in chunks; return every row closed (close_all at the end) and late count."""
    state = PartitionWindows(CONFIG)
    rows: list[FeatureWindowRow] = []
    late = 0
    sizes = chunks or [len(messages)]
    offset = 0
    for size in sizes:
        part = list(enumerate(messages[offset:offset + size], start=offset))
        offset += size
        for _, b in part:
            state.settle_kinds(b)
        late += sum(r.count for r in state.apply(part))
        rows += state.close_ready()
        if checkpoint:
            state = PartitionWindows.from_bytes(CONFIG, state.to_bytes())
    rows += state.close_all()
    return rows, late


def stream(seed: int, n_messages: int = 30, max_events: int = 40) -> list[EventBlock]:
    rng = np.random.default_rng(seed)
    messages = []
    t = 10_000
    for _ in range(n_messages):
        n = int(rng.integers(1, max_events))
        t += int(rng.integers(0, 400))
        # Mostly in order, some events up to 1.5 windows behind: some of them late.
        times = (t - rng.integers(0, 1500, n) * (rng.random(n) < 0.2)).tolist()
        x = rng.normal(5, 2, n)
        x[rng.random(n) < 0.1] = np.nan
        messages.append(block(times, x=[None if np.isnan(v) else float(v) for v in x],
                              c=rng.choice(["a", "b", "c", "d"], n).tolist()))
    return messages


def oracle(messages: list[EventBlock]) -> tuple[dict[tuple[int, str], list[Any]], int]:
    """Per (window, feature) the values that belong in it, by the documented rule."""
    seen = -1
    cells: dict[tuple[int, str], list[Any]] = defaultdict(list)
    late = 0
    for b in messages:
        closed_through = seen - CONFIG.allowed_lateness_ms
        for i, t in enumerate(b.event_time):
            start = t - t % W
            if start + W <= closed_through:
                late += 1
                continue
            for name, column in b.features.items():
                cells[(start, name)].append(column[i])
        seen = max(seen, *b.event_time)
    return cells, late


@pytest.mark.parametrize(("seed", "max_events"), [(0, 40), (1, 40), (2, 40), (3, 2), (4, 2)])
def test_windows_agree_with_numpy(seed: int, max_events: int) -> None:
    messages = stream(seed, 200 if max_events == 2 else 30, max_events)
    rows, late = run(messages)
    cells, expected_late = oracle(messages)
    assert late == expected_late
    assert {(r.window_start, r.feature) for r in rows} == set(cells)
    for r in rows:
        values = cells[(r.window_start, r.feature)]
        assert r.count == len(values)
        assert r.missing_count == sum(v is None for v in values)
        if r.kind == "numeric":
            x = np.array([v for v in values if v is not None])
            assert r.mean == pytest.approx(x.mean(), rel=1e-12)
            assert r.variance == pytest.approx(x.var(), rel=1e-9, abs=1e-12)
            assert (r.min, r.max) == (x.min(), x.max())
            edges = np.array(r.bin_edges)
            expected = np.bincount(np.searchsorted(edges, x, side="right"),
                                   minlength=len(edges) + 1)
            assert list(r.bin_counts) == expected.tolist()
        else:
            cats, counts = np.unique(np.array(values, dtype=object), return_counts=True)
            assert dict(zip(r.categories, r.category_counts, strict=True)) == dict(
                zip(cats.tolist(), counts.tolist(), strict=True))


def test_edges_are_frozen_once_per_feature() -> None:
    rows, _ = run(stream(11, 60))
    edges = {r.bin_edges for r in rows if r.kind == "numeric"}
    assert len(edges) == 1 and len(next(iter(edges))) >= 2


def _key(rows: list[FeatureWindowRow]) -> list[tuple[Any, ...]]:
    return sorted((r.window_start, r.feature, r.count, r.missing_count,
                   None if np.isnan(r.mean) else round(r.mean, 9), r.bin_edges, r.bin_counts,
                   r.categories, r.category_counts) for r in rows)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 7), min_size=1, max_size=30),
       st.booleans())
def test_results_do_not_depend_on_batching_or_checkpoints(seed: int, sizes: list[int],
                                                          checkpoint: bool) -> None:
    messages = stream(seed, 25)
    whole, late_whole = run(messages)
    total = sum(sizes)
    chunks = sizes if total >= len(messages) else [*sizes, len(messages) - total]
    split, late_split = run(messages, chunks, checkpoint)
    assert late_split == late_whole
    assert _key(split) == _key(whole)


def test_late_events_are_counted_per_message_and_window() -> None:
    state = PartitionWindows(CONFIG)
    messages = [block([10_000, 10_500], x=[1.0, 2.0]), block([12_500], x=[3.0]),
                block([10_100, 10_200, 12_600], x=[4.0, 5.0, 6.0])]
    state.apply(list(enumerate(messages)))
    late = state.apply([(3, block([10_300], x=[7.0]))])
    assert [(r.window_start, r.offset, r.count) for r in late] == [(10_000, 3, 1)]


def test_watermark_closes_quiet_windows_and_later_events_are_late() -> None:
    state = PartitionWindows(CONFIG)
    state.apply([(0, block([5_100, 5_200], x=[1.0, 2.0]))])
    assert state.close_ready() == []
    state.apply([(1, watermark(6_200))])
    rows = state.close_ready()
    assert [(r.window_start, r.count) for r in rows] == [(5_000, 2)]
    late = state.apply([(2, block([5_300], x=[3.0]))])
    assert [r.count for r in late] == [1]
    assert state.applied_offset == 2


def test_values_of_the_other_kind_are_counted_as_invalid_and_the_rest_kept() -> None:
    state = PartitionWindows(CONFIG)
    first = block([1, 2], x=[1.0, 2.0], c=["a", None])
    second = block([3, 4, 5], x=["a", None, "b"], c=[1.0, 2.0, "b"])
    blocks = []
    for offset, b in enumerate([first, second]):
        state.settle_kinds(b)
        blocks.append((offset, b))
    # Strings in the numeric x; c's column is mostly numbers, so numbers in the categorical
    # c: dropped, positions kept (a mixed column keeps its majority kind, then its feature's).
    assert second.invalid == {"x": [0, 2], "c": [0, 1, 2]}
    assert second.features["x"] == [None, None, None]
    state.apply(blocks)
    rows = {r.feature: r for r in state.close_all()}
    x, c = rows["x"], rows["c"]
    # Invalid values count as missing too: count - missing_count is what the distribution has.
    assert (x.count, x.missing_count, x.invalid_count, x.mean) == (5, 3, 2, 1.5)
    assert (c.count, c.missing_count, c.invalid_count, c.window_events) == (5, 4, 3, 5)
    assert (x.present, c.present) == (2, 1)
    assert dict(zip(c.categories, c.category_counts, strict=True)) == {"a": 1}


def test_a_feature_first_seen_missing_takes_the_kind_of_its_first_value() -> None:
    state = PartitionWindows(CONFIG)
    first = block([10_000, 10_001], x=[None, None])
    state.settle_kinds(first)
    state.apply([(0, first)])
    second = block([10_002], x=["a"])
    state.settle_kinds(second)
    state.apply([(1, second)])
    (row,) = state.close_all()
    assert (row.kind, row.count, row.missing_count, row.categories) == ("categorical", 3, 2, ("a",))


def test_configured_edges_are_used_as_given() -> None:
    state = PartitionWindows(WindowConfig(window_ms=W, fixed_edges={"x": (0.0, 1.0, 2.0)}))
    b = block([10_000] * 4, x=[-1.0, 0.5, 1.5, 9.0])
    state.settle_kinds(b)
    state.apply([(0, b)])
    (row,) = state.close_all()
    assert row.bin_edges == (0.0, 1.0, 2.0)
    assert row.bin_counts == (1, 1, 1, 1)


def test_all_missing_window_has_defined_values() -> None:
    state = PartitionWindows(CONFIG)
    state.apply([(0, block([10_000], x=[None]))])
    (row,) = state.close_all()
    assert (row.count, row.missing_count, row.bin_counts) == (1, 1, ())
    assert np.isnan(row.mean)


def test_state_is_bounded_by_open_windows_not_events() -> None:
    state = PartitionWindows(CONFIG)
    sizes = []
    rng = np.random.default_rng(0)
    for i in range(200):
        t0 = 10_000 + i * 100
        b = block((t0 + rng.integers(0, 100, 50)).tolist(), x=rng.normal(size=50).tolist())
        state.settle_kinds(b)
        state.apply([(i, b)])
        state.close_ready()
        sizes.append(len(state.to_bytes()))
    assert max(sizes[100:]) < 1.5 * max(sizes[50:100])


def test_one_models_backfill_does_not_make_another_models_events_late() -> None:
    state = PartitionWindows(CONFIG)
    live = [block([50_000 + i], model="live", x=[1.0]) for i in range(3)]
    backfill = [block([10_000 + i], model="old", x=[2.0]) for i in range(3)]
    late = state.apply(list(enumerate(live + backfill)))
    assert late == []
    assert state.event_time == {"live": 50_002, "old": 10_002}


def test_a_watermark_naming_a_model_closes_only_its_windows() -> None:
    state = PartitionWindows(CONFIG)
    state.apply([(0, block([10_000], model="a", x=[1.0])),
                 (1, block([10_000], model="b", x=[1.0]))])
    assert state.idle_watermark("a") == 10_000 + W + CONFIG.allowed_lateness_ms
    state.apply([(2, EventBlock("watermark", "a", "", [state.idle_watermark("a") or 0]))])
    assert [r.model for r in state.close_ready()] == ["a"]
    assert state.open_windows == 1 and state.idle_watermark("a") is None


def _reference(**features: Any) -> Any:
    from driftline.models.drift.reference import ReferenceProfile

    return ReferenceProfile("m", "v1", "training", 0, features)


def _numeric_reference(edges: tuple[float, ...], fine: tuple[float, ...]) -> Any:
    from driftline.models.drift.reference import NumericReference

    return NumericReference(edges=edges, counts=(0,) * (len(edges) + 1), fine_edges=fine,
                            fine_counts=(0,) * (len(fine) + 1), count=0, missing_count=0,
                            mean=0.0, std=1.0, min=0.0, max=1.0, quantiles=(0.0,) * 7)


def test_windows_are_binned_on_the_reference_edges() -> None:
    ref = _reference(x=_numeric_reference((0.0, 1.0), (0.0, 0.5, 1.0)))
    state = PartitionWindows(CONFIG, lambda model, version: ref)
    b = block([10_000] * 4, x=[-1.0, 0.2, 0.7, 3.0])
    state.settle_kinds(b)
    state.apply([(0, b)])
    (row,) = state.close_all()
    assert (row.bin_edges, row.bin_counts) == ((0.0, 1.0), (1, 2, 1))
    assert (row.fine_bin_edges, row.fine_bin_counts) == ((0.0, 0.5, 1.0), (1, 1, 1, 1))


def test_a_number_the_reference_treats_as_a_category_is_counted_by_its_label() -> None:
    from driftline.models.drift.reference import CategoricalReference

    ref = _reference(x=CategoricalReference(("1", "2"), (5, 5), 0, 10, 0))
    state = PartitionWindows(CONFIG, lambda model, version: ref)
    b = block([10_000] * 4, x=[1.0, 2.0, 2.0, 7.0])
    state.settle_kinds(b)
    state.apply([(0, b)])
    (row,) = state.close_all()
    assert row.kind == "categorical"
    assert dict(row.tracked_counts) == {"1": 1, "2": 2, "7": 1}


def test_a_reference_that_arrives_later_applies_from_the_next_window() -> None:
    live: dict[str, Any] = {}
    state = PartitionWindows(CONFIG, lambda model, version: live.get("ref"))
    first = block([10_000 + i for i in range(60)], x=[float(i) for i in range(60)])
    state.settle_kinds(first)
    state.apply([(0, first)])
    live["ref"] = _reference(x=_numeric_reference((10.0, 20.0), (10.0, 15.0, 20.0)))
    second = block([11_000, 11_001], x=[12.0, 30.0])
    state.settle_kinds(second)
    state.apply([(1, second)])
    rows = sorted(state.close_all(), key=lambda r: r.window_start)
    assert rows[0].bin_edges != (10.0, 20.0) and sum(rows[0].bin_counts) == 60
    assert (rows[1].bin_edges, rows[1].bin_counts) == ((10.0, 20.0), (0, 1, 1))


def test_model_outputs_are_watched_like_features() -> None:
    from driftline.models.events.wire import MIN_EVENT_TIME_MS as T
    from driftline.models.events.wire import decode

    state = PartitionWindows(CONFIG)
    b = decode(b"m", orjson.dumps({"type": "prediction_batch", "model": "m", "version": "v1",
                                   "request_id": ["a", "b"], "event_time": [T, T + 1],
                                   "score": [0.2, 0.8], "prediction": ["no", "yes"]}))
    state.settle_kinds(b)
    state.apply([(0, b)])
    rows = {r.feature: r for r in state.close_all()}
    assert rows["output.score"].mean == pytest.approx(0.5)
    assert dict(rows["output.prediction"].tracked_counts) == {"no": 1, "yes": 1}
