"""Where a worker's time goes per batch, without Kafka: decode the same envelopes as
``benchmarks/throughput.py``, apply them to one partition's per-model state (windows,
drift scores against references, detectors, alert rules) and encode the records a
checkpoint writes, stage by stage.

    python benchmarks/apply_profile.py [--events 400000] [--single] [--models 4]
                                       [--features 25] [--profile]

Prints events/s per stage and in all; ``--profile`` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).parent))

from throughput import T0

from driftline.models import state_codec
from driftline.models.alerting.rules import RulesConfig
from driftline.models.drift.reference import ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.models.events.wire import EventBlock, decode
from driftline.models.partition import PartitionModels, PartitionState
from driftline.streams.settings import Settings
from driftline.streams.worker.feature_windows import monitor_config, window_config

BATCH_MESSAGES = 1024


def make_messages(models: int, features: int, events: int, single: bool, per_envelope: int,
                  seed: int) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    names = [f"m{i}" for i in range(models)]
    numeric = [f"num_{i:03d}" for i in range(features * 4 // 5)]
    categorical = [f"cat_{i}" for i in range(features - len(numeric))]
    per = 1 if single else per_envelope
    out = []
    for i in range(events // per):
        model = names[i % models]
        t = T0 + (i // models) * (10 if single else 10_000) + np.sort(
            rng.integers(0, 10 if single else 10_000, per))
        cols: dict[str, Any] = {f: rng.normal(0, 1.0, per).round(4) for f in numeric}
        cols.update({f: rng.choice(["a", "b", "c", "d", "e"], per).tolist() for f in categorical})
        if single:
            doc: dict[str, Any] = {
                "type": "prediction", "model": model, "version": "v1", "request_id": str(i),
                "event_time": int(t[0]),
                "features": {f: (v[0].item() if isinstance(v, np.ndarray) else v[0])
                             for f, v in cols.items()}, "score": 0.5}
        else:
            doc = {"type": "prediction_batch", "model": model, "version": "v1",
                   "request_id": [f"{i}-{j}" for j in range(per)], "event_time": t,
                   "features": cols, "score": rng.random(per).round(4)}
        out.append((model.encode(), orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)))
    return out


def make_references(models: int, features: int) -> dict[tuple[str, str], ReferenceProfile]:
    rng = np.random.default_rng(2)
    numeric = [f"num_{i:03d}" for i in range(features * 4 // 5)]
    categorical = [f"cat_{i}" for i in range(features - len(numeric))]
    out = {}
    for i in range(models):
        cols: dict[str, Any] = {f: rng.normal(0, 1.0, 5000) for f in numeric}
        cols.update({f: rng.choice(["a", "b", "c", "d", "e"], 5000) for f in categorical})
        cols["output.score"] = rng.random(5000)
        out[(f"m{i}", "v1")] = build_profile(f"m{i}", "v1", cols)
    return out


def run(messages: list[tuple[bytes, bytes]], refs: dict[tuple[str, str], ReferenceProfile]
        ) -> dict[str, float]:
    settings = Settings()
    rules = RulesConfig.default()

    def lookup(model: str, version: str) -> ReferenceProfile | None:
        return refs.get((model, version))

    models = PartitionModels(lambda: PartitionState.new(
        window_config(settings), monitor_config(settings), rules, lookup))
    spent = dict.fromkeys(("decode", "apply", "encode"), 0.0)
    written = 0
    for start in range(0, len(messages), BATCH_MESSAGES):
        batch = messages[start:start + BATCH_MESSAGES]
        t0 = time.perf_counter()
        blocks: list[tuple[int, EventBlock]] = []
        for offset, (key, value) in enumerate(batch, start):
            block = decode(key, value, 1 << 24)
            models.settle_kinds(block)
            blocks.append((offset, block))
        t1 = time.perf_counter()
        _, _, _, touched = models.apply(blocks)
        models.applied_offset = start + len(batch) - 1
        t2 = time.perf_counter()
        for model in sorted(touched):
            written += len(models.states[model].to_bytes())
        written += len(state_codec.encode({"applied_offset": models.applied_offset}))
        t3 = time.perf_counter()
        spent["decode"] += t1 - t0
        spent["apply"] += t2 - t1
        spent["encode"] += t3 - t2
    spent["checkpoint_bytes"] = written
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--features", type=int, default=25)
    parser.add_argument("--envelope-events", type=int, default=1000)
    parser.add_argument("--single", action="store_true", help="single-event messages")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    messages = make_messages(args.models, args.features, args.events, args.single,
                             args.envelope_events, 1)
    refs = make_references(args.models, args.features)
    gc.freeze()  # as the worker does after start-up: the messages are not garbage
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    spent = run(messages, refs)
    if profiler:
        profiler.disable()
    total = spent["decode"] + spent["apply"] + spent["encode"]
    n = args.events
    print(f"{n / total:,.0f} events/s in all; " + ", ".join(
        f"{stage} {100 * spent[stage] / total:.0f} % ({n / spent[stage]:,.0f}/s)"
        for stage in ("decode", "apply", "encode"))
        + f"; {spent['checkpoint_bytes'] / 1e6:.1f} MB of records")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
