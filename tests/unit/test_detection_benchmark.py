"""Smoke run of benchmarks/detection.py on tiny streams: its pieces fit together."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

from rich.console import Console

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "detection.py"
_SPEC = importlib.util.spec_from_file_location("benchmark_detection", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
detection = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = detection  # dataclasses look their module up there
_SPEC.loader.exec_module(detection)

TINY = detection.RunSize(seeds=1, windows=9, change_at=7, stationary_seeds=1,
                         stationary_windows=8, stationary_events=600)


def test_delay_counts_the_first_changed_window_as_one() -> None:
    assert detection.first_delay([3, 7, 8], change_at=7) == 1
    assert detection.first_delay([3], change_at=7) is None
    summary = detection.delay_summary([1, 2, None])
    assert (summary["detected"], summary["median"], summary["max"]) == (2, 2.0, None)


def test_a_1_sigma_shift_is_caught_by_every_detector_and_stationary_windows_are_counted() -> None:
    shift = detection.Scenario("abrupt mean +1σ", "numeric", detection.mean_shift(1.0), 600)
    result = detection.run_scenario(shift, seeds=1, windows=9, change_at=7, base_seed=7)
    assert {d: r["max"] for d, r in result["detectors"].items()} == {
        "driftline": 2, "driftline_baseline": 2, "p_rule": 1, "adwin": 1}
    stationary = detection.run_stationary(seeds=1, windows=8, events=600, base_seed=7)
    judged = {d: r["feature_windows"] for d, r in stationary["detectors"].items()}
    features = len(detection.STATIONARY)
    # min_windows 3 (training reference); 5 baseline windows; every window for the others.
    assert judged == {"driftline": 6 * features, "driftline_baseline": 3 * features,
                      "p_rule": 8 * features, "adwin": 8 * features}


def test_a_tiny_full_run_reports_targets_and_serialises() -> None:
    result = detection.run(TINY, base_seed=7)
    out = io.StringIO()
    detection.report(Console(file=out, width=160), result)
    text = out.getvalue()
    assert text.count("PASS") + text.count("FAIL") == 4
    assert json.loads(json.dumps(result))["config"]["seeds"] == 1
