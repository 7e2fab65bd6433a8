"""Events per second through one worker process, next to the raw ceiling measured in the
same run: a plain aiokafka consumer + ``orjson.loads`` of the same messages.

25 features per event (20 numeric, 5 categorical), four models. Two wire forms:
batch envelopes (1,000 events per message, what the publisher sends) and single-event
messages (what any producer can send). Messages are produced before the worker starts,
so the figure is the worker's own pace, not the producer's. A training reference is
published for every model first, so windows are scored for drift, judged by the alert
rules and the score stream runs through river's detectors, as in production.

    python benchmarks/throughput.py [--events 1000000] [--single-events 200000]
                                    [--forms envelopes,envelopes-no-join,singles]

Prints a table and writes benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from driftline.models.drift.reference import ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.reference.profiles import publish_profiles
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess
from driftline.streams.worker.topics import ensure_topics

MODELS = ("m0", "m1", "m2", "m3")
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
T0 = 1_764_230_400_000
ENVELOPE_EVENTS = 1000


def references(seed: int) -> list[ReferenceProfile]:
    """Training references drawn from the same distributions as the traffic."""
    rng = np.random.default_rng(seed + 1)
    profiles = []
    for i, model in enumerate(MODELS):
        n = 20_000
        columns: dict[str, Any] = {f: rng.normal(i % 7, 1.0, n) for f in NUMERIC}
        columns.update({f: rng.choice(["a", "b", "c", "d", "e"], n) for f in CATEGORICAL})
        columns["output.score"] = rng.random(n)
        profiles.append(build_profile(model, "v1", columns))
    return profiles


def envelopes(n_events: int, seed: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, events) for batch envelopes, four models in turn, stationary."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_events // ENVELOPE_EVENTS):
        model = MODELS[i % len(MODELS)]
        n = ENVELOPE_EVENTS
        # Each model gets an envelope every 10 s of event time: 6 per 60 s window.
        t = T0 + (i // len(MODELS)) * 10_000 + np.sort(rng.integers(0, 10_000, n))
        centre = MODELS.index(model) % 7  # as in references()
        features: dict[str, Any] = {f: rng.normal(centre, 1.0, n).round(4) for f in NUMERIC}
        features.update({f: rng.choice(["a", "b", "c", "d", "e"], n).tolist()
                         for f in CATEGORICAL})
        doc = {"type": "prediction_batch", "model": model, "version": "v1",
               "request_id": [f"{i}-{j}" for j in range(n)], "event_time": t,
               "features": features, "score": rng.random(n).round(4)}
        out.append((model.encode(), orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), n))
    return out


def singles(n_events: int, seed: int) -> list[tuple[bytes, bytes, int]]:
    rng = np.random.default_rng(seed)
    numeric = rng.normal(0, 1, (n_events, len(NUMERIC))).round(4).tolist()
    cats = rng.choice(["a", "b", "c", "d", "e"], (n_events, len(CATEGORICAL))).tolist()
    out = []
    for i in range(n_events):
        model = MODELS[i % len(MODELS)]
        features = dict(zip(NUMERIC, numeric[i], strict=True))
        features.update(zip(CATEGORICAL, cats[i], strict=True))
        doc = {"type": "prediction", "model": model, "version": "v1", "request_id": str(i),
               "event_time": T0 + i, "features": features, "score": 0.5}
        out.append((model.encode(), orjson.dumps(doc), 1))
    return out


async def produce(settings: Settings, topic: str, messages: list[tuple[bytes, bytes, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10,
                                max_batch_size=1_048_576,
                                max_request_size=settings.max_message_bytes)
    await producer.start()
    try:
        for key, value, _ in messages:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def raw_ceiling(settings: Settings, topic: str, n_messages: int) -> float:
    """Seconds for aiokafka + orjson.loads to read every message of the topic."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=settings.max_message_bytes * 2,
                                fetch_max_bytes=settings.max_message_bytes * 8)
    await consumer.start()
    try:
        seen = 0
        began = time.perf_counter()
        while seen < n_messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                seen += sum(len(r) for r in batches.values())
        return time.perf_counter() - began
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str, topic: str) -> int:
    """Messages the group has committed on the topic (OffsetFetch; no group join)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p))
                   for p in range(settings.partitions)]
        return sum(o or 0 for o in offsets)
    finally:
        await consumer.stop()


def worker_pace(settings: Settings, topic: str, n_messages: int, log: Path) -> float:
    """Seconds from the worker saying it is ready (the topic already full) to its last commit."""
    worker = WorkerProcess(settings.replace(predictions_topic=topic), log).start()
    try:
        deadline = time.monotonic() + 600
        ready: float | None = None
        while time.monotonic() < deadline:
            if not worker.is_running():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            now = time.perf_counter()
            if ready is None:
                if log.exists() and "Worker]: Ready" in log.read_text(errors="replace"):
                    ready = now
            elif asyncio.run(committed(settings, settings.app_id, topic)) >= n_messages:
                return now - ready
            time.sleep(0.1)
        raise RuntimeError(f"worker did not finish in time:\n{worker.log_tail()}")
    finally:
        worker.stop()


def run_case(stack_settings: Settings, name: str, messages: list[tuple[bytes, bytes, int]],
             home: Path, with_references: bool = True) -> dict[str, Any]:
    settings = stack_settings.replace(
        predictions_topic=f"bench-{name}", dead_letter_topic=f"bench-{name}-dlq",
        labels_topic=f"bench-{name}-labels", app_id=f"bench-{name}",
        references_topic=f"bench-{name}-references", alerts_topic=f"bench-{name}-alerts",
        clickhouse_database=f"bench_{name.replace('-', '_')}",
        state_dir=str(home / f"state-{name}"),
        partitions=4, window_seconds=60)
    asyncio.run(ensure_topics(settings))
    if with_references:
        asyncio.run(publish_profiles(settings, references(seed=1)))
    asyncio.run(produce(settings, settings.predictions_topic, messages))
    events = sum(n for _, _, n in messages)
    raw_s = asyncio.run(raw_ceiling(settings, settings.predictions_topic, len(messages)))
    worker_s = worker_pace(settings, settings.predictions_topic, len(messages),
                           home / f"worker-{name}.log")
    return {"form": name, "messages": len(messages), "events": events,
            "raw_events_per_s": events / raw_s, "worker_events_per_s": events / worker_s,
            "worker_vs_raw": raw_s / worker_s}


def write_results(console: Console, out: Path, results: list[dict[str, Any]]) -> None:
    """The rows as JSON, with the machine they were measured on."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2))
    console.print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--single-events", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--forms", default="envelopes,envelopes-no-join,singles",
                        help="which of the wire forms to run, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        home = Path(tmp)
        with EmbeddedStack(home / "embedded") as stack:
            base = Settings().replace(**stack.settings_overrides())
            cases = {
                "envelopes": lambda: run_case(base, "envelopes",
                                              envelopes(args.events, args.seed), home),
                "envelopes-no-join": lambda: run_case(base.replace(label_join=False),
                                                      "envelopes-no-join",
                                                      envelopes(args.events, args.seed), home),
                "singles": lambda: run_case(base, "singles",
                                            singles(args.single_events, args.seed), home),
            }
            results = [cases[form]() for form in args.forms.split(",")]
    table = Table("wire form", "messages", "events", "raw ceiling ev/s", "worker ev/s",
                  "worker / raw", title="driftline throughput, one worker process")
    for r in results:
        table.add_row(r["form"], f"{r['messages']:,}", f"{r['events']:,}",
                      f"{r['raw_events_per_s']:,.0f}", f"{r['worker_events_per_s']:,.0f}",
                      f"{r['worker_vs_raw']:.2f}")
    console.print(table)
    write_results(console, args.out, results)


if __name__ == "__main__":
    main()
