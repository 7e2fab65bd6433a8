"""The partition state judges windows the same however messages were batched, and its
checkpoint (the bytes stored in the Faust table) restores it exactly."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.monitor import MonitorConfig
from driftline.models.events.wire import EventBlock
from driftline.models.partition import PartitionState
from driftline.models.windows.feature_windows import WindowConfig

W = 60_000
T0 = 1_764_230_400_000
WINDOWS = WindowConfig(window_ms=W, allowed_lateness_ms=5_000)
MONITOR = MonitorConfig(window_ms=W, baseline_windows=3)


def messages(seed: int = 4) -> list[tuple[int, EventBlock]]:
    """Twelve windows of a model whose score turns at window 7, five messages a window."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(12):
        for part in range(5):
            n = 300
            scores = (rng.beta(2, 5, n) if i < 7 else rng.beta(5, 2, n)).tolist()
            x = rng.normal(0.0 if i < 7 else 1.0, 1.0, n).tolist()
            start = T0 + i * W + part * (W // 5)
            times = (start + np.sort(rng.integers(0, W // 5, n))).tolist()
            out.append((len(out), EventBlock(
                "prediction", "m", "v1", times, features={"x": x, "output.score": scores},
                feature_kinds={"x": "numeric", "output.score": "numeric"}, score=scores)))
    out.append((len(out), EventBlock("watermark", "m", "", [T0 + 13 * W])))
    return out


def run(batches: list[list[tuple[int, EventBlock]]], checkpoint: bool) -> list[tuple[str, ...]]:
    state = PartitionState.new(WINDOWS, MONITOR, RulesConfig.default())
    alerts = []
    for batch in batches:
        for _, block in batch:
            state.windows.settle_kinds(block)
        _, _, health = state.apply(batch)
        alerts += [(a.id, a.state, a.feature, a.metric) for a in health.alerts]
        alerts += [("hit", str(s.window_start), s.feature, s.metric) for s in health.scores
                   if s.metric in ("adwin", "page_hinkley") and s.value]
        if checkpoint:
            state = PartitionState.from_bytes(state.to_bytes(), WINDOWS, MONITOR,
                                              RulesConfig.default())
    return alerts


@pytest.mark.parametrize("size", [1, 7, 1000])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_alerts_do_not_depend_on_batching_or_checkpoints(size: int, checkpoint: bool) -> None:
    stream = messages()
    one_by_one = run([[m] for m in stream], checkpoint=False)
    batched = run([stream[i:i + size] for i in range(0, len(stream), size)], checkpoint)
    assert sorted(batched) == sorted(one_by_one)
    assert any(kind == "hit" for kind, *_ in one_by_one)  # the detectors take part
