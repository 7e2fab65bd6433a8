"""How one worker's cost grows with the models and features it holds: events/s, checkpoint
bytes written per second, the largest changelog record and peak RSS, next to the raw
consume-and-decode ceiling of the same messages measured in the same run.

One worker process on the embedded stack, 4 partitions, 60 s windows, batch envelopes,
everything on: a training reference published for every model (so every window is scored
for drift from the first, as in ``throughput.py``), detectors, alert rules and the label
join. ``--baselines`` publishes none: windows are then scored only once a version has
closed enough windows for its baseline, which a case with few windows per model never
reaches.

Every model sends the same traffic in every case: envelopes of ``--envelope-events``
events, 10 s of event time apart (six to a window), at least ``--envelopes-per-model``
of them, so every case opens and closes windows for every model. Cases differ only in how
many models and features the worker holds: with few models a case sends more envelopes
per model (``--events`` in all), with many it sends more events. What a case costs more
per event than ``4x25`` is then what holding more models or features costs. (A fleet's
traffic split over more models in ever smaller envelopes costs more per event too, from
the per-message and per-window work: ``--envelope-events`` shows that on its own.)

    python benchmarks/growth.py [--events 400000] [--envelope-events 100]
                                [--cases 4x25,100x25,...,4x25x2]

A third number in a case runs that many worker processes in one consumer group (they
share the 4 partitions); "peak RSS" is then the largest of one worker.

Prints a table and writes benchmarks/results/growth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from throughput import T0, committed, produce, raw_ceiling, write_results

from driftline.models.drift.reference import ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.reference.profiles import publish_profiles
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics


def envelopes(models: int, features: int, events: int, per_model: int, size: int,
              seed: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, events): envelopes of ``size`` events, at least ``per_model`` for each
    model (more when that makes fewer than ``events``), the models in turn."""
    rng = np.random.default_rng(seed)
    per_model = max(per_model, -(-events // (models * size)))
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


def references(models: int, features: int, seed: int) -> list[ReferenceProfile]:
    """A training reference per model, drawn as :func:`envelopes` draws its traffic (the
    models share seven distributions, so seven profiles are built and renamed)."""
    rng = np.random.default_rng(seed + 1)
    categorical = features // 5
    built = {}
    for centre in range(min(models, 7)):
        columns: dict[str, Any] = {f"num_{i:03d}": rng.normal(centre, 1.0, 5000)
                                   for i in range(features - categorical)}
        columns.update({f"cat_{i:03d}": rng.choice(["a", "b", "c", "d"], 5000)
                        for i in range(categorical)})
        columns["output.score"] = rng.random(5000)
        built[centre] = build_profile("model", "v1", columns)
    return [dataclasses.replace(built[m % 7], model=f"model-{m:04d}") for m in range(models)]


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


def run_workers(settings: Settings, n_messages: int, home: Path, name: str,
                count: int = 1) -> tuple[float, int]:
    """Seconds from the first worker saying it is ready to the group's last commit, and the
    largest peak RSS of one worker. With several workers in the group the time includes
    the rebalance when the others join, as it would in production."""
    workers = [WorkerProcess(settings.replace(state_dir=f"{settings.state_dir}-{i}"),
                             home / f"worker-{name}-{i}.log").start() for i in range(count)]
    processes = [psutil.Process(w.pid) for w in workers if w.pid is not None]
    peak = 0
    try:
        deadline = time.monotonic() + 900
        ready: float | None = None
        last_check = 0.0
        while time.monotonic() < deadline:
            for worker in workers:
                if not worker.is_running():
                    raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            peak = max([peak] + [p.memory_info().rss for p in processes])
            now = time.perf_counter()
            if ready is None:
                if any("Worker]: Ready" in w.log_path.read_text(errors="replace")
                       for w in workers if w.log_path.exists()):
                    ready = now
            elif now - last_check > 0.5:
                last_check = now
                if asyncio.run(committed(settings, settings.app_id,
                                         settings.predictions_topic)) >= n_messages:
                    return now - ready, peak
            time.sleep(0.1)
        raise RuntimeError(f"workers did not finish in time:\n{workers[0].log_tail()}")
    finally:
        for worker in workers:
            worker.stop()


def run_case(base: Settings, models: int, features: int, events: int, per_model: int,
             size: int, home: Path, seed: int, workers: int = 1, index: int = 0,
             with_references: bool = True) -> dict[str, Any]:
    name = f"g{index}_{models}x{features}w{workers}"
    settings = base.replace(
        predictions_topic=f"{name}-predictions", dead_letter_topic=f"{name}-dlq",
        labels_topic=f"{name}-labels", app_id=name, references_topic=f"{name}-references",
        alerts_topic=f"{name}-alerts", telemetry_topic=f"{name}-telemetry",
        clickhouse_database=name, state_dir=str(home / f"state-{name}"), partitions=4,
        window_seconds=60)
    messages = envelopes(models, features, events, per_model, size, seed)
    asyncio.run(ensure_topics(settings))
    if with_references:
        asyncio.run(publish_profiles(settings, references(models, features, seed)))
    asyncio.run(produce(settings, settings.predictions_topic, messages))
    n_events = sum(n for _, _, n in messages)
    raw_s = asyncio.run(raw_ceiling(settings, settings.predictions_topic, len(messages)))
    worker_s, rss = run_workers(settings, len(messages), home, name, workers)
    records, total, largest = asyncio.run(changelog_sizes(settings))
    return {"models": models, "features": features, "workers": workers, "events": n_events,
            "messages": len(messages), "events_per_envelope": messages[0][2],
            "raw_events_per_s": n_events / raw_s, "worker_events_per_s": n_events / worker_s,
            "worker_vs_raw": raw_s / worker_s, "checkpoint_records": records,
            "checkpoint_bytes": total, "checkpoint_bytes_per_s": total / worker_s,
            "largest_record_bytes": largest, "peak_rss_bytes": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="events per case")
    parser.add_argument("--envelopes-per-model", type=int, default=12)
    parser.add_argument("--envelope-events", type=int, default=100,
                        help="events per envelope, in every case")
    parser.add_argument("--cases", default="4x25,100x25,1000x25,4x100,4x400,4x25x2",
                        help="models x features [x worker processes], comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baselines", action="store_true",
                        help="publish no references: drift against each version's baseline")
    parser.add_argument("--buffer", type=int, default=Settings().stream_buffer_messages,
                        help="DRIFTLINE_STREAM_BUFFER_MESSAGES of the worker")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/growth.json"))
    args = parser.parse_args()
    cases = [[int(n) for n in case.split("x")] + [1] for case in args.cases.split(",")]
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftline-growth-") as tmp:
        home = Path(tmp)
        with EmbeddedStack(home / "embedded") as stack:
            base = Settings().replace(**stack.settings_overrides(),
                                      stream_buffer_messages=args.buffer)
            for index, (models, features, workers, *_) in enumerate(cases):
                console.log(f"{models} models x {features} features, {workers} worker(s) ...")
                try:
                    results.append(run_case(base, models, features, args.events,
                                            args.envelopes_per_model, args.envelope_events,
                                            home, args.seed, workers, index,
                                            not args.baselines))
                except (RuntimeError, KafkaError) as exc:  # a crash is a result too
                    last = str(exc).strip().splitlines()[-1][:200]
                    results.append({"models": models, "features": features,
                                    "workers": workers, "error": last})
                console.log(results[-1])
    table = Table("models", "features", "workers", "events", "per envelope", "raw ev/s",
                  "worker ev/s", "worker / raw", f"vs {results[0]['models']}x"
                  f"{results[0]['features']}", "checkpoint kB/s", "largest record kB",
                  "peak RSS MB", title="driftline cost growth")
    first = results[0].get("worker_events_per_s")
    for r in results:
        if "error" in r:
            table.add_row(f"{r['models']:,}", str(r["features"]), str(r["workers"]),
                          "failed: " + r["error"])
            continue
        table.add_row(f"{r['models']:,}", str(r["features"]), str(r["workers"]),
                      f"{r['events']:,}",
                      str(r["events_per_envelope"]), f"{r['raw_events_per_s']:,.0f}",
                      f"{r['worker_events_per_s']:,.0f}", f"{r['worker_vs_raw']:.2f}",
                      f"{r['worker_events_per_s'] / first:.2f}" if first else "-",
                      f"{r['checkpoint_bytes_per_s'] / 1e3:,.0f}",
                      f"{r['largest_record_bytes'] / 1e3:,.1f}",
                      f"{r['peak_rss_bytes'] / 1e6:,.0f}")
    console.print(table)
    write_results(console, args.out, results)


if __name__ == "__main__":
    main()
