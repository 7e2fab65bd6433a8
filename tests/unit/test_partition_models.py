"""A partition held as one state per model: the same rows and alerts however the messages
were batched and whichever models' records a crash left behind, and records that stay
small however many models the partition holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftline.models.alerting.rules import RulesConfig
from driftline.models.data_quality.silence import SilenceWatch
from driftline.models.drift.monitor import MonitorConfig
from driftline.models.events.wire import EventBlock
from driftline.models.partition import PartitionModels, PartitionState
from driftline.models.windows.feature_windows import WindowConfig

W = 60_000
T0 = 1_764_230_400_000
WINDOWS = WindowConfig(window_ms=W, allowed_lateness_ms=5_000)
MONITOR = MonitorConfig(window_ms=W, baseline_windows=2)
RULES = RulesConfig.default()


def new_state() -> PartitionState:
    return PartitionState.new(WINDOWS, MONITOR, RULES)


def stream(models: int = 3, windows: int = 5, seed: int = 2) -> list[tuple[int, EventBlock]]:
    """Envelopes of several models in turn, a watermark for one of them now and then, and
    watermarks for the whole partition (no model named) at the end."""
    rng = np.random.default_rng(seed)
    out: list[tuple[int, EventBlock]] = []
    for i in range(windows * 4):
        for m in range(models):
            n = 40
            times = (T0 + i * (W // 4) + np.sort(rng.integers(0, W // 4, n))).tolist()
            x = rng.normal(m + (i > windows * 2), 1.0, n).tolist()
            out.append((len(out), EventBlock(
                "prediction", f"m{m}", "v1", times, features={"x": x, "c": ["a", "b"] * (n // 2)},
                feature_kinds={"x": "numeric", "c": "categorical"})))
        if i % 7 == 3:
            out.append((len(out), EventBlock("watermark", "m1", "", [T0 + i * (W // 4)])))
    out.append((len(out), EventBlock("watermark", "", "", [T0 + (windows + 2) * W])))
    return out


def summary(rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    return sorted((r.model, r.feature, r.window_start, r.count, r.missing_count) for r in rows)


def apply(models: PartitionModels, blocks: list[tuple[int, EventBlock]]
          ) -> tuple[list[Any], set[str]]:
    for _, block in blocks:
        models.settle_kinds(block)
    _, rows, _, touched = models.apply(blocks)
    if blocks:
        models.applied_offset = max(models.applied_offset, blocks[-1][0])
    return rows, touched


def checkpoint(models: PartitionModels, touched: set[str]) -> dict[str, bytes]:
    return {m: models.states[m].to_bytes() for m in touched}


def restore(records: dict[str, bytes], applied_offset: int) -> PartitionModels:
    models = PartitionModels(new_state)
    models.applied_offset = applied_offset
    models.states = {m: PartitionState.from_bytes(b, WINDOWS, MONITOR, RULES)
                     for m, b in records.items()}
    return models


def test_a_watermark_for_the_partition_closes_every_model_it_holds() -> None:
    rows, touched = apply(PartitionModels(new_state), stream())
    assert touched == {"m0", "m1", "m2"}
    assert {(m, s) for m, _, s, *_ in summary(rows)} == {
        (f"m{m}", T0 + w * W) for m in range(3) for w in range(5)}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_rows_do_not_depend_on_batching(sizes: list[int]) -> None:
    blocks = stream()
    whole, _ = apply(PartitionModels(new_state), blocks)
    models, rows, i = PartitionModels(new_state), [], 0
    while i < len(blocks):
        size = sizes[len(rows) % len(sizes)]
        batch_rows, _ = apply(models, blocks[i:i + size])
        rows += batch_rows
        i += size
    assert summary(rows) == summary(whole)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 60), st.data())
def test_a_crash_between_model_records_replays_each_model_exactly(cut: int, data: Any) -> None:
    """Records of only some of the models a batch touched reached the changelog, and the
    partition's offset did not: the replay gives every model exactly what it missed."""
    blocks = stream()
    whole, _ = apply(PartitionModels(new_state), blocks)
    models = PartitionModels(new_state)
    first, touched = apply(models, blocks[:cut])
    records = checkpoint(models, set(models.states))
    durable_offset = models.applied_offset
    second, touched = apply(models, blocks[cut:cut + 25])
    written = data.draw(st.sets(st.sampled_from(sorted(touched)))) if touched else set()
    records.update(checkpoint(models, written))  # the crash: the others never got there
    restored = restore(records, durable_offset)
    replayed, _ = apply(restored, blocks[cut:])
    # Rows of the lost records come again; those already written are not written twice
    # by a model that holds them, and every window's row is the same.
    kept = {(r.model, r.feature, r.window_start) for r in second if r.model in written}
    again = [r for r in replayed if (r.model, r.feature, r.window_start) not in kept]
    assert summary(first + [r for r in second if r.model in written] + again) == summary(whole)


def test_records_stay_small_however_many_models_a_partition_holds() -> None:
    models = PartitionModels(new_state)
    rng = np.random.default_rng(3)
    for m in range(200):
        x = rng.normal(0, 1, 100).tolist()
        times = (T0 + np.sort(rng.integers(0, W, 100))).tolist()
        apply(models, [(m, EventBlock("prediction", f"model-{m}", "v1", times,
                                      features={f"f{k}": x for k in range(5)},
                                      feature_kinds={f"f{k}": "numeric" for k in range(5)}))])
    sizes = [len(s.to_bytes()) for s in models.states.values()]
    assert len(sizes) == 200 and max(sizes) < 64 * 1024
    assert max(sizes) < 1.5 * min(sizes)  # one model's record does not grow with the others


def test_a_label_only_model_is_held_without_windows() -> None:
    models = PartitionModels(new_state)
    models.state("labelled-first").performance.advance_label_clock({"labelled-first": T0})
    rows, touched = apply(models, [(0, EventBlock("watermark", "", "", [T0 + W]))])
    assert rows == [] and touched == {"labelled-first"}


@pytest.mark.parametrize("kind", ["label", "unknown"])
def test_blocks_that_are_not_predictions_or_watermarks_touch_no_model(kind: str) -> None:
    models = PartitionModels(new_state)
    _, touched = apply(models, [(0, EventBlock(kind, "m", "v1", [T0]))])
    assert touched == set() and models.states == {}


def silent_stream(quiet: range, windows: int = 20) -> list[tuple[int, EventBlock]]:
    """Three models sending every quarter window; m2 sends nothing in the windows of
    ``quiet``."""
    rng = np.random.default_rng(5)
    out: list[tuple[int, EventBlock]] = []
    for i in range(windows * 4):
        for m in range(3):
            if m == 2 and i // 4 in quiet:
                continue
            times = (T0 + i * (W // 4) + np.sort(rng.integers(0, W // 4, 20))).tolist()
            out.append((len(out), EventBlock("prediction", f"m{m}", "v1", times,
                                             features={"x": rng.normal(0, 1, 20).tolist()},
                                             feature_kinds={"x": "numeric"})))
    return out


def silence_alerts(blocks: list[tuple[int, EventBlock]], sizes: list[int]) -> list[Any]:
    models = PartitionModels(new_state, SilenceWatch(RULES, W))
    alerts, i, k = [], 0, 0
    while i < len(blocks):
        batch = blocks[i:i + sizes[k % len(sizes)]]
        for _, block in batch:
            models.settle_kinds(block)
        alerts += [a for a in models.apply(batch)[2].alerts if a.dedup_key.endswith("(silence)")]
        models.applied_offset = batch[-1][0]
        i, k = i + len(batch), k + 1
    return alerts


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_a_model_silent_while_its_partition_flows_opens_and_resolves_whatever_the_batching(
        sizes: list[int]) -> None:
    alerts = silence_alerts(silent_stream(range(6, 14)), sizes)
    assert [(a.state, a.model, a.severity, a.first_seen) for a in alerts] == [
        ("open", "m2", "critical", T0 + 6 * W), ("resolved", "m2", "critical", T0 + 6 * W)]
    assert alerts[1].last_seen == T0 + 14 * W  # its predictions came back in window 14
    assert "no predictions for 5 windows" in alerts[0].summary
    assert alerts == silence_alerts(silent_stream(range(6, 14)), [10_000])


def test_a_gap_shorter_than_the_threshold_or_a_lone_model_is_not_silence() -> None:
    assert silence_alerts(silent_stream(range(6, 10)), [7]) == []  # 4 windows
    lone = [(o, b) for o, b in silent_stream(range(6, 14)) if b.model == "m2"]
    assert silence_alerts([(i, b) for i, (_, b) in enumerate(lone)], [5]) == []
