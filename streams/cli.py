"""driftline: drift, model-health and alert monitoring for ML models in production.

    driftline demo       embedded broker + ClickHouse + worker + synthetic traffic, then results
    driftline worker     run a worker against the configured Kafka and ClickHouse
    driftline embedded   run only the embedded broker and ClickHouse, until Ctrl-C
    driftline traffic    publish synthetic traffic to the configured Kafka
    driftline reference  build a reference profile from training data, or publish one
    driftline agent      publish this host's GPU and host telemetry (one per inference host)

Every setting comes from ``DRIFTLINE_*`` environment variables (see streams/settings.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from driftline.streams.demo.traffic import TrafficPlan
from driftline.streams.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    try:
        settings = Settings.from_env()
        return int(args.command(args, settings, console))
    except (ValueError, RuntimeError, OSError) as exc:
        console.print(f"[red]driftline: {exc}[/]", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the main job on the embedded broker and ClickHouse")
    _traffic_args(demo)
    demo.add_argument("--home", type=Path, default=Path(".driftline"),
                      help="where embedded data, state and logs go (default: .driftline)")
    demo.set_defaults(command=_demo)

    worker = sub.add_parser("worker", help="run a worker (Faust) against configured Kafka")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(command=_worker)

    embedded = sub.add_parser("embedded", help="run the embedded broker + ClickHouse only")
    embedded.add_argument("--home", type=Path, default=Path(".driftline"))
    embedded.add_argument("--kafka-port", type=int, default=9092)
    embedded.add_argument("--clickhouse-port", type=int, default=8123)
    embedded.set_defaults(command=_embedded)

    traffic = sub.add_parser("traffic", help="publish synthetic traffic to configured Kafka")
    _traffic_args(traffic)
    traffic.set_defaults(command=_traffic)

    from driftline.streams.reference.profiles import add_reference_parser

    add_reference_parser(sub)  # driftline reference build | publish

    agent = sub.add_parser("agent", help="publish this host's GPU and host telemetry")
    agent.add_argument("--replay", metavar="RECORDING",
                       help="GPU readings from a recording instead of NVML: a shipped name "
                            "(h100x2) or a recording JSON file")
    agent.add_argument("--once", action="store_true",
                       help="print one sample as JSON to stdout and exit, without Kafka")
    agent.set_defaults(command=_agent)
    return parser


def _traffic_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--windows", type=int, default=14, help="windows of event time")
    parser.add_argument("--events-per-window", type=int, default=6_000)
    parser.add_argument("--rate", type=float, default=None, help="events per second cap")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shift-at", type=float, default=0.5,
                        help="fraction of the run where fraud-detector v2 starts to drift")
    parser.add_argument("--shift-until", type=float, default=0.75,
                        help="fraction of the run where the drift ends (1: never)")


def _plan(args: argparse.Namespace, settings: Settings) -> TrafficPlan:
    return TrafficPlan(windows=args.windows, events_per_window=args.events_per_window,
                       window_ms=settings.window_ms, seed=args.seed,
                       events_per_second=args.rate, shift_at=args.shift_at,
                       shift_until=args.shift_until)


def _demo(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.demo.run import run_demo

    logging.basicConfig(level=logging.WARNING)
    # Quiet partitions close their windows soon, so the demo's last window lands quickly.
    settings = settings.replace(idle_close_seconds=min(settings.idle_close_seconds, 3.0),
                                # Its labels come within minutes of event time, not hours.
                                judge_after_seconds=min(settings.judge_after_seconds, 120))
    return run_demo(settings, _plan(args, settings), args.home, console)


def _worker(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import faust

    from driftline.streams.worker.assembly import create_worker
    from driftline.streams.worker.topics import ensure_topics

    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    worker = create_worker(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    faust.Worker(worker.app, loop=loop, loglevel=args.loglevel).execute_from_commandline()
    return 0


def _embedded(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.embedded.stack import EmbeddedStack

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedStack(args.home / "embedded", kafka_port=args.kafka_port,
                       clickhouse_port=args.clickhouse_port) as stack:
        console.print("embedded broker and ClickHouse are up; use them with:")
        for key, value in stack.settings_overrides().items():
            console.print(f"  export DRIFTLINE_{key.upper()}={value}", highlight=False)
        console.print("Ctrl-C stops both.")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def _traffic(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.demo.traffic import send_traffic
    from driftline.streams.publisher import AsyncPublisher

    async def run() -> int:
        async with AsyncPublisher.from_settings(settings) as publisher:
            return await send_traffic(publisher, _plan(args, settings))

    sent = asyncio.run(run())
    console.print(f"published {sent} events to {settings.predictions_topic}")
    return 0


def _agent(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.agent import ReplayBackend, TelemetryAgent

    # Logs go to stderr, so that `--once` prints nothing but the sample on stdout.
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = ReplayBackend.load(args.replay) if args.replay else None
    agent = TelemetryAgent(settings, backend=backend)
    if args.once:
        sample = asyncio.run(agent.sample_once())
        sys.stdout.buffer.write(sample.to_json() + b"\n")
        sys.stdout.flush()
        return 0

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        stats = await agent.run(stop)
        console.print(f"telemetry agent stopped: {stats.sent} samples sent to "
                      f"{settings.telemetry_topic}, {stats.dropped} dropped", highlight=False)
        return 0

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
