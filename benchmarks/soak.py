"""Does a worker's memory stay flat on a long stationary stream? Peak RSS of one worker
process sampled against the events it has committed, while a producer keeps feeding the
predictions topic (4 models × 25 features, 1,000-event envelopes, label join on).

    python benchmarks/soak.py [--events 20000000]

Prints the median and peak RSS between marks (1M, 2M, 5M, 10M and 20M events committed)
and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import CATEGORICAL, ENVELOPE_EVENTS, MODELS, NUMERIC, T0, committed, write_results

from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

MARKS = (1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000)


def stream(n_envelopes: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """Stationary envelopes, models in turn, each model 10 s of event time per envelope:
    feature columns drawn once per model (a few variants), event times and ids fresh."""
    rng = np.random.default_rng(seed)
    variants = {m: [{**{f: rng.normal(i, 1.0, ENVELOPE_EVENTS).round(4).tolist()
                         for f in NUMERIC},
                      **{f: rng.choice(["a", "b", "c", "d", "e"], ENVELOPE_EVENTS).tolist()
                         for f in CATEGORICAL}} for _ in range(8)]
                for i, m in enumerate(MODELS)}
    offsets = np.sort(rng.integers(0, 10_000, ENVELOPE_EVENTS))
    for i in range(n_envelopes):
        model = MODELS[i % len(MODELS)]
        doc: dict[str, Any] = {
            "type": "prediction_batch", "model": model, "version": "v1",
            "request_id": [f"{i}-{j}" for j in range(ENVELOPE_EVENTS)],
            "event_time": T0 + (i // len(MODELS)) * 10_000 + offsets,
            "features": variants[model][i % 8],
            "score": variants[model][(i + 1) % 8][NUMERIC[0]]}
        yield model.encode(), orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def produce_all(settings: Settings, n_envelopes: int, errors: list[Exception]) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10,
                                    max_batch_size=1_048_576,
                                    max_request_size=settings.max_message_bytes)
        await producer.start()
        try:
            for key, value in stream(n_envelopes, seed=1):
                await producer.send(settings.predictions_topic, value=value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    try:
        asyncio.run(run())
    except (KafkaError, OSError) as exc:  # reported by the main thread
        errors.append(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--buffer", type=int, default=Settings().stream_buffer_messages,
                        help="DRIFTLINE_STREAM_BUFFER_MESSAGES of the worker: while the "
                             "producer is ahead, the read-ahead fills up to this")
    parser.add_argument("--release-memory-seconds", type=float,
                        default=Settings().release_memory_seconds,
                        help="DRIFTLINE_RELEASE_MEMORY_SECONDS of the worker (0: never)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"))
    args = parser.parse_args()
    console = Console()
    n_envelopes = args.events // ENVELOPE_EVENTS
    samples: list[tuple[int, int, int]] = []  # (events committed, RSS, threads)
    with tempfile.TemporaryDirectory(prefix="driftline-soak-") as tmp:
        home = Path(tmp)
        with EmbeddedStack(home / "embedded") as stack:
            settings = Settings().replace(**stack.settings_overrides(), app_id="soak",
                                          predictions_topic="soak-predictions",
                                          clickhouse_database="soak",
                                          state_dir=str(home / "state"), partitions=4,
                                          stream_buffer_messages=args.buffer,
                                          release_memory_seconds=args.release_memory_seconds)
            asyncio.run(ensure_topics(settings))
            errors: list[Exception] = []
            producer = threading.Thread(target=produce_all,
                                        args=(settings, n_envelopes, errors), daemon=True)
            producer.start()
            worker = WorkerProcess(settings, home / "worker.log").start()
            assert worker.pid is not None
            process = psutil.Process(worker.pid)
            began = time.monotonic()
            try:
                done = 0
                while done < n_envelopes:
                    if errors:
                        raise RuntimeError(f"producer failed: {errors[0]!r}")
                    if not worker.is_running():
                        raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
                    done = asyncio.run(committed(settings, settings.app_id,
                                                settings.predictions_topic))
                    samples.append((done * ENVELOPE_EVENTS, process.memory_info().rss,
                                    process.num_threads()))
                    if len(samples) % 10 == 0:
                        console.log(f"{samples[-1][0]:,} events, RSS "
                                    f"{samples[-1][1] / 1e6:,.0f} MB, "
                                    f"{samples[-1][2]} threads")
                    time.sleep(1.0)
            finally:
                worker.stop()
    seconds = time.monotonic() - began
    rows = []
    previous = 0
    for mark in (m for m in MARKS if m <= args.events):
        # Within a batch RSS swings by what the batch holds: the median over the stretch
        # since the last mark shows the level, the peak what it costs at worst.
        stretch = [(rss, threads) for events, rss, threads in samples
                   if previous < events <= mark] or [samples[-1][1:]]
        rows.append({"events": mark,
                     "median_rss_bytes": int(statistics.median(r for r, _ in stretch)),
                     "peak_rss_bytes": max(r for r, _ in stretch),
                     "threads": stretch[-1][1]})
        previous = mark
    table = Table("events committed", "median RSS MB", "peak RSS MB", "threads",
                  title=f"worker memory on a stationary stream ({seconds:.0f} s); "
                        "since the mark before")
    for r in rows:
        table.add_row(f"{r['events']:,}", f"{r['median_rss_bytes'] / 1e6:,.0f}",
                      f"{r['peak_rss_bytes'] / 1e6:,.0f}", str(r["threads"]))
    console.print(table)
    write_results(console, args.out, rows)


if __name__ == "__main__":
    main()
