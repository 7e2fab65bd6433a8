"""How one worker's cost grows with the models and features it holds: events/s, checkpoint
bytes written per second, the largest changelog record and peak RSS, next to the raw
consume-and-decode ceiling of the same messages measured in the same run.

One worker process on the embedded stack, 4 partitions, 60 s windows, batch envelopes,
drift against baselines (no references published), detectors and the label join on.
Each model gets the same number of envelopes (at least ``--envelopes-per-model``, and at
most 1,000 events each), 10 s of event time apart, so every case opens and closes windows
for every model.

    python benchmarks/growth.py [--events 400000] [--cases 4x25,100x25,1000x25,4x100,4x400]

Prints a table and writes benchmarks/results/growth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ENVELOPE_EVENTS, T0, committed, produce, raw_ceiling

from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics


def envelopes(models: int, features: int, events: int, per_model: int,
              seed: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, events): ``per_model`` envelopes (or more) for each model, in turn."""
    rng = np.random.default_rng(seed)
    # At most ENVELOPE_EVENTS per envelope, as a publisher sends them: more envelopes
    # (and windows) per model when there are few models.
    per_model = max(per_model, -(-events // (models * ENVELOPE_EVENTS)))
    size = max(1, events // (models * per_model))
    categorical = features // 5
    names = [f"num_{i:03d}" for i in range(features - categorical)]
    cats = [f"cat_{i:03d}" for i in range(categorical)]
    out = []
    for j in range(per_model):
        for m in range(models):
            t = T0 + j * 10_000 + np.sort(rng.integers(0, 10_000, size))
            doc: dict[str, Any] = {
                "type": "prediction_batch", "model": f"model-{m:04d}", "version": "v1",
                "request_id": [f"{m}-{j}-{k}" for k in range(size)], "event_time": t,
                "features": {**{f: rng.normal(m % 7, 1.0, size).round(3) for f in names},
                             **{f: rng.choice(["a", "b", "c", "d"], size).tolist()
                                for f in cats}},
                "score": rng.random(size).round(3)}
            out.append((f"model-{m:04d}".encode(),
                        orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), size))
    return out


async def changelog_sizes(settings: Settings) -> tuple[int, int, int]:
    """(records, bytes, largest record) of the worker's checkpoint changelog."""
    topic = f"{settings.app_id}-window_states-changelog"
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        records = total = largest = 0
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                idle += 1
                continue
            idle = 0
            for part in batches.values():
                for record in part:
                    size = len(record.value or b"")
                    records, total, largest = records + 1, total + size, max(largest, size)
        return records, total, largest
    finally:
        await consumer.stop()


def run_worker(settings: Settings, n_messages: int, log: Path) -> tuple[float, int]:
    """Seconds from "ready" to the last commit, and the worker's peak RSS."""
    worker = WorkerProcess(settings, log).start()
    assert worker.pid is not None
    process = psutil.Process(worker.pid)
    peak = 0
    try:
        deadline = time.monotonic() + 900
        ready: float | None = None
        last_check = 0.0
        while time.monotonic() < deadline:
            if not worker.is_running():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            peak = max(peak, process.memory_info().rss)
            now = time.perf_counter()
            if ready is None:
                if log.exists() and "Worker]: Ready" in log.read_text(errors="replace"):
                    ready = now
            elif now - last_check > 0.5:
                last_check = now
                if asyncio.run(committed(settings, settings.app_id,
                                         settings.predictions_topic)) >= n_messages:
                    return now - ready, peak
            time.sleep(0.1)
        raise RuntimeError(f"worker did not finish in time:\n{worker.log_tail()}")
    finally:
        worker.stop()


def run_case(base: Settings, models: int, features: int, events: int, per_model: int,
             home: Path, seed: int) -> dict[str, Any]:
    name = f"g{models}x{features}"
    settings = base.replace(
        predictions_topic=f"{name}-predictions", dead_letter_topic=f"{name}-dlq",
        labels_topic=f"{name}-labels", app_id=name, references_topic=f"{name}-references",
        alerts_topic=f"{name}-alerts", telemetry_topic=f"{name}-telemetry",
        clickhouse_database=name, state_dir=str(home / f"state-{name}"), partitions=4,
        window_seconds=60)
    messages = envelopes(models, features, events, per_model, seed)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, settings.predictions_topic, messages))
    n_events = sum(n for _, _, n in messages)
    raw_s = asyncio.run(raw_ceiling(settings, settings.predictions_topic, len(messages)))
    worker_s, rss = run_worker(settings, len(messages), home / f"worker-{name}.log")
    records, total, largest = asyncio.run(changelog_sizes(settings))
    return {"models": models, "features": features, "events": n_events,
            "messages": len(messages), "events_per_envelope": messages[0][2],
            "raw_events_per_s": n_events / raw_s, "worker_events_per_s": n_events / worker_s,
            "worker_vs_raw": raw_s / worker_s, "checkpoint_records": records,
            "checkpoint_bytes": total, "checkpoint_bytes_per_s": total / worker_s,
            "largest_record_bytes": largest, "peak_rss_bytes": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="events per case")
    parser.add_argument("--envelopes-per-model", type=int, default=12)
    parser.add_argument("--cases", default="4x25,100x25,1000x25,4x100,4x400",
                        help="models x features, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/growth.json"))
    args = parser.parse_args()
    cases = [tuple(int(n) for n in case.split("x")) for case in args.cases.split(",")]
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftline-growth-") as tmp:
        home = Path(tmp)
        with EmbeddedStack(home / "embedded") as stack:
            base = Settings().replace(**stack.settings_overrides())
            for models, features in cases:
                console.log(f"{models} models x {features} features ...")
                try:
                    results.append(run_case(base, models, features, args.events,
                                            args.envelopes_per_model, home, args.seed))
                except (RuntimeError, KafkaError) as exc:  # a crash is a result too
                    last = str(exc).strip().splitlines()[-1][:200]
                    results.append({"models": models, "features": features, "error": last})
                console.log(results[-1])
    table = Table("models", "features", "events", "per envelope", "raw ev/s", "worker ev/s",
                  "worker / raw", "checkpoint kB/s", "largest record kB", "peak RSS MB",
                  title="driftline cost growth, one worker process")
    for r in results:
        if "error" in r:
            table.add_row(f"{r['models']:,}", str(r["features"]), "failed: " + r["error"])
            continue
        table.add_row(f"{r['models']:,}", str(r["features"]), f"{r['events']:,}",
                      str(r["events_per_envelope"]), f"{r['raw_events_per_s']:,.0f}",
                      f"{r['worker_events_per_s']:,.0f}", f"{r['worker_vs_raw']:.2f}",
                      f"{r['checkpoint_bytes_per_s'] / 1e3:,.0f}",
                      f"{r['largest_record_bytes'] / 1e3:,.1f}",
                      f"{r['peak_rss_bytes'] / 1e6:,.0f}")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.platform(), "results": results},
                                   indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
