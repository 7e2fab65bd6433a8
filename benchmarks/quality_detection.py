"""Model-quality alerts on seeded label streams with known change points.

Each stream is a classifier's windows of 1,000 labelled predictions (90 % accuracy),
judged by the default rules (accuracy drop against the version's first 5 windows, river's
HDDM_A and ADWIN on the loss, 2 bad windows to open). Stationary streams measure false
incidents; streams whose accuracy drops at window 20 measure the delay (1 = caught at the
first worse window).

    python benchmarks/quality_detection.py [--seeds 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from driftline.models.alerting.rules import RulesConfig
from driftline.models.quality.monitor import DueWindow, PerformanceConfig, PerformanceMonitor
from driftline.models.quality.performance_window import PairColumns, WindowPerformance, summarize

W = 60_000
LABELS = 1_000
CHANGE = 20


def window(rng: np.random.Generator, accuracy: float, w: int) -> WindowPerformance:
    score = rng.random(LABELS)
    predicted = (score > 0.5).astype(int)
    label = np.where(rng.random(LABELS) < accuracy, predicted, 1 - predicted)
    return summarize(PairColumns.from_columns({
        "prediction_time": w * W + np.arange(LABELS), "prediction": predicted.astype(str).tolist(),
        "label": label.astype(str).tolist(), "score": score.tolist(),
        "probabilities": [{}] * LABELS, "delay_seconds": np.full(LABELS, 30.0)}))


def opened(accuracies: list[float], seed: int) -> list[int]:
    """Windows in which a quality incident opened."""
    rng = np.random.default_rng(seed)
    monitor = PerformanceMonitor(PerformanceConfig(), RulesConfig.default())
    out = []
    for w, accuracy in enumerate(accuracies):
        due = DueWindow("m", "v1", w * W, (w + 1) * W, LABELS)
        out += [w for alert in monitor.judge(due, window(rng, accuracy, w))
                if alert.state == "open"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    args = parser.parse_args()
    began = time.perf_counter()
    false = sum(len(opened([0.9] * 60, seed)) for seed in range(args.seeds))
    print(f"stationary 90 %: {false} quality incidents in {args.seeds * 60:,} windows "
          f"({args.seeds * 60 * LABELS:,} labels)")
    for after in (0.85, 0.8, 0.7):
        delays = []
        for seed in range(args.seeds):
            late = [w for w in opened([0.9] * CHANGE + [after] * 10, 1_000 + seed)
                    if w >= CHANGE]
            delays.append(late[0] - CHANGE + 1 if late else None)
        caught = sorted(d for d in delays if d is not None)
        median = caught[len(caught) // 2] if caught else None
        print(f"90 % -> {after:.0%}: caught {len(caught)}/{args.seeds}, delay median {median}, "
              f"max {max(caught) if caught else None} windows")
    print(f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
