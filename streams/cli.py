"""driftline: drift, model-health and alert monitoring for ML models in production.

    driftline demo       embedded broker + ClickHouse + worker + synthetic traffic, then results
    driftline worker     run a worker against the configured Kafka and ClickHouse
    driftline embedded   run only the embedded broker and ClickHouse, until Ctrl-C
    driftline traffic    publish synthetic traffic to the configured Kafka
    driftline reference  build a reference profile from training data, or publish one
    driftline agent      publish this host's GPU and host telemetry (one per inference host)
    driftline ui         serve a read-only web page of the results in ClickHouse

Every setting is a ``DRIFTLINE_*`` environment variable, listed with its default in the
README's settings table; ``driftline COMMAND --help`` names those the command reads.

The base install (the publisher alone) must be able to print every --help, so this module
imports only the standard library, the settings and the version at the top; each command
imports its extra's packages when it runs, and a missing one becomes a one-line install hint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from driftline import __version__
from driftline.streams.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from driftline.streams.demo.traffic import TrafficPlan

_Command = Callable[[argparse.Namespace, Settings, "Console"], int]

_EVERY_SETTING = ("Every setting is a DRIFTLINE_* environment variable; the settings table in "
                  "README.md (\"Running on real Kafka and ClickHouse\") lists them all with "
                  "their defaults.")

# The settings each command reads, by concern (names without the DRIFTLINE_ prefix).
_KAFKA = "KAFKA_BOOTSTRAP KAFKA_SECURITY_PROTOCOL KAFKA_SASL_* KAFKA_SSL_*"
_CLICKHOUSE = ("CLICKHOUSE_URL CLICKHOUSE_USER CLICKHOUSE_PASSWORD CLICKHOUSE_DATABASE "
               "CLICKHOUSE_CA_FILE")
_WORKER_SETTINGS = (
    ("Kafka", f"{_KAFKA} BROKER_FLAVOR"),
    ("topics", "PREDICTIONS_TOPIC LABELS_TOPIC DEAD_LETTER_TOPIC REFERENCES_TOPIC ALERTS_TOPIC "
               "TELEMETRY_TOPIC REGISTRY_TOPIC LINEAGE_TOPIC PIPELINES_TOPIC TRACES_TOPIC "
               "TRACES_ENCODING SERVICE_CHAINS_TOPIC SERVICE_HOPS_TOPIC PARTITIONS "
               "REPLICATION_FACTOR"),
    ("ClickHouse", _CLICKHOUSE),
    ("worker", "APP_ID STATE_DIR WINDOW_SECONDS ALLOWED_LATENESS_SECONDS IDLE_CLOSE_SECONDS "
               "CHECKPOINT_SECONDS BATCH_MAX_MESSAGES STREAM_BUFFER_MESSAGES MAX_MESSAGE_BYTES "
               "RELEASE_MEMORY_SECONDS METRICS_PORT METRICS_HOST"),
    ("features", "HISTOGRAM_BINS FINE_HISTOGRAM_BINS EDGE_SAMPLE_SIZE BIN_EDGES "
                 "TOP_K_CATEGORIES MAX_TRACKED_CATEGORIES QUANTILE_RELATIVE_ACCURACY"),
    ("labels", "LABEL_JOIN LABEL_TTL_SECONDS EARLY_LABEL_TTL_SECONDS JUDGE_AFTER_SECONDS MODELS"),
    ("outcomes", "OUTCOME_TTL_SECONDS OUTCOME_JUDGE_AFTER_SECONDS OUTCOME_CONFIDENCE"),
    ("webhooks", "WEBHOOKS WEBHOOK_ATTEMPTS RETRAINING_TOPIC RETRAINING_WEBHOOKS"),
    ("drift", "REFERENCE_WAIT_SECONDS RULES_FILE BASELINE_WINDOWS BASELINE_MODE DETECTORS "
              "DETECTOR_STREAMS"),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ModuleNotFoundError as exc:
        package = (exc.name or "driftline").partition(".")[0]
        if package == "driftline":
            raise  # our own module missing is a broken install or a bug, not an extra
        sys.stderr.write(f"{args.prog} needs the '{args.extra}' extra (no module named "
                         f"{package!r}): pip install 'driftline[{args.extra}]'\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console  # every extra has rich; the base install does not

    console = Console(stderr=False)
    try:
        return int(args.command(args, Settings.from_env(), console))
    except (ValueError, RuntimeError, OSError) as exc:
        console.print(f"[red]driftline: {exc}[/]", highlight=False)
        return 2


# -- arguments --------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftline", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_wrap(f"{_EVERY_SETTING} Each command's --help names those it reads, and "
                     "the extra it needs."))
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}",
                        help="print driftline's version and exit")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", title="commands",
                                help="`driftline COMMAND --help` shows its options")
    _add_demo_parser(sub)
    _add_worker_parser(sub)
    _add_embedded_parser(sub)
    _add_traffic_parser(sub)
    add_reference_parser(sub)
    _add_registry_parser(sub)
    _add_agent_parser(sub)
    _add_ui_parser(sub)
    return parser


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             summary: str, epilog: str, command: _Command, extra: str,
             ) -> argparse.ArgumentParser:
    """A subcommand that runs ``command`` and needs the packages of ``extra``."""
    description = (f"{summary[0].upper()}{summary[1:]}.\n"
                   f"Needs the '{extra}' extra: pip install 'driftline[{extra}]'")
    parser = sub.add_parser(name, help=summary, description=description,
                            epilog=f"{epilog}\n\n{_wrap(_EVERY_SETTING)}",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(command=command, extra=extra, prog=parser.prog)
    return parser


def _reads(*groups: tuple[str, str]) -> str:
    """The epilog lines naming the settings a command reads, one concern per line."""
    lines = ["settings it reads:"]
    for concern, names in groups:
        listed = ", ".join(f"DRIFTLINE_{name}" for name in names.split())
        lines += textwrap.wrap(listed, _width(), initial_indent=f"  {concern:<11} ",
                               subsequent_indent=" " * 14, break_long_words=False,
                               break_on_hyphens=False)
    return "\n".join(lines)


def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, _width(), break_on_hyphens=False))


def _width() -> int:
    # argparse wraps the options to the terminal; the epilogs, kept as written, follow suit.
    return max(min(shutil.get_terminal_size().columns - 2, 88), 40)


def _add_demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _wrap(
        "settings it reads: those of `driftline worker --help`, except DRIFTLINE_KAFKA_BOOTSTRAP, "
        "DRIFTLINE_BROKER_FLAVOR, DRIFTLINE_CLICKHOUSE_URL and DRIFTLINE_STATE_DIR, which point "
        "at the embedded stack under --home; DRIFTLINE_IDLE_CLOSE_SECONDS is capped at 3 and "
        "DRIFTLINE_JUDGE_AFTER_SECONDS and DRIFTLINE_OUTCOME_JUDGE_AFTER_SECONDS at 120, so "
        "that the last window and its judgement come within the run.")
    demo = _command(sub, "demo", "run the main job on the embedded broker and ClickHouse",
                    epilog, _demo, extra="embedded")
    _traffic_args(demo)
    demo.add_argument("--home", type=Path, default=Path(".driftline"),
                      help="where embedded data, state and logs go (default: %(default)s)")
    demo.add_argument("--ui-port", type=int, default=8765,
                      help="at the end, in a terminal, a read-only web page of the results "
                           "is served on 127.0.0.1 at this port until Ctrl-C (default: "
                           "%(default)s)")
    demo.add_argument("--no-ui", action="store_true",
                      help="end after printing the results, without serving the web page")


def _add_worker_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = _command(sub, "worker", "run a worker against the configured Kafka and ClickHouse",
                      _reads(*_WORKER_SETTINGS), _worker, extra="worker")
    worker.add_argument("--loglevel", default="info",
                        help="Faust's log level: debug, info, warning, error or critical "
                             "(default: %(default)s)")


def _add_embedded_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _wrap(
        "It reads no settings. Once up, it prints the DRIFTLINE_KAFKA_BOOTSTRAP, "
        "DRIFTLINE_BROKER_FLAVOR and DRIFTLINE_CLICKHOUSE_URL to export so that other "
        "driftline commands use it.")
    embedded = _command(sub, "embedded", "run the embedded broker and ClickHouse only, until "
                        "Ctrl-C", epilog, _embedded, extra="embedded")
    embedded.add_argument("--home", type=Path, default=Path(".driftline"),
                          help="its data and logs go under HOME/embedded (default: %(default)s)")
    embedded.add_argument("--kafka-port", type=int, default=9092,
                          help="the broker's port on 127.0.0.1 (default: %(default)s)")
    embedded.add_argument("--clickhouse-port", type=int, default=8123,
                          help="ClickHouse's HTTP port on 127.0.0.1 (default: %(default)s)")


def _add_traffic_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _reads(("Kafka", _KAFKA), ("topics", "PREDICTIONS_TOPIC LABELS_TOPIC"),
                    ("events", "WINDOW_SECONDS MAX_MESSAGE_BYTES"))
    traffic = _command(sub, "traffic", "publish synthetic traffic to the configured Kafka",
                       epilog, _traffic, extra="worker")
    _traffic_args(traffic)


def _traffic_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--windows", type=int, default=14,
                        help="windows of event time (DRIFTLINE_WINDOW_SECONDS each) to fill "
                             "(default: %(default)s)")
    parser.add_argument("--events-per-window", type=int, default=6_000,
                        help="predictions per window, all models together (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=None,
                        help="events per second cap (default: none, as fast as Kafka takes them)")
    parser.add_argument("--seed", type=int, default=7,
                        help="random seed: the same seed sends the same events (default: "
                             "%(default)s)")
    parser.add_argument("--shift-at", type=float, default=0.5,
                        help="fraction of the run where fraud-detector v2 starts to drift "
                             "(default: %(default)s)")
    parser.add_argument("--shift-until", type=float, default=0.75,
                        help="fraction of the run where the drift ends, 1 for never (default: "
                             "%(default)s)")


def add_reference_parser(
        sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``reference build`` and ``reference publish`` to a subparsers action.

    Declared here, not in :mod:`driftline.streams.reference.profiles`, because that module
    imports the reference extra's packages and ``driftline --help`` must work without them.
    """
    reference = sub.add_parser("reference", help="build and publish reference profiles",
                               description="Build reference profiles and publish them.",
                               epilog=_wrap(_EVERY_SETTING),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = reference.add_subparsers(required=True, metavar="COMMAND", title="commands",
                                        help="`driftline reference COMMAND --help` shows its "
                                             "options")
    _add_build_parser(commands)
    _add_publish_parser(commands)
    return reference


def _add_registry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser("registry", help="register model versions and deployments",
                              description="Register model versions and their deployments.",
                              epilog=_wrap(_EVERY_SETTING),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = registry.add_subparsers(required=True, metavar="COMMAND", title="commands",
                                       help="`driftline registry COMMAND --help` shows its "
                                            "options")
    epilog = _reads(("Kafka", _KAFKA), ("topic", "REGISTRY_TOPIC REPLICATION_FACTOR"))
    version = _command(commands, "version", "register a model version: what it was trained "
                       "on, with what, how well", epilog, _registry_version, extra="registry")
    version.add_argument("--model", required=True, help="the model's name (required)")
    version.add_argument("--version", required=True, help="the model version (required)")
    version.add_argument("--created-at", type=int, default=None, metavar="MS",
                         help="when it was trained, UTC epoch ms (default: now)")
    for flag, what in (("training-run-id", "the training run (e.g. its Airflow run id)"),
                       ("code-revision", "the code it was trained with (a git commit)"),
                       ("training-data", "what it was trained on (a table, a path)"),
                       ("reference-id", "the profile_id of its reference profile"),
                       ("description", "free text")):
        version.add_argument(f"--{flag}", default="", help=f"{what} (default: none)")
    version.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="a training parameter; repeatable (default: none)")
    version.add_argument("--metric", action="append", default=[], metavar="NAME=NUMBER",
                         help="a training metric; repeatable (default: none)")
    deploy = _command(commands, "deploy", "record that a version went live, was rolled back "
                      "or retired", epilog, _registry_deploy, extra="registry")
    deploy.add_argument("--model", required=True, help="the model's name (required)")
    deploy.add_argument("--version", required=True, help="the model version (required)")
    deploy.add_argument("--event", default="deployed",
                        choices=("deployed", "rolled_back", "retired"),
                        help="what happened (default: %(default)s)")
    deploy.add_argument("--share", type=float, default=1.0,
                        help="share of the model's traffic it serves, 0..1 (default: 1)")
    deploy.add_argument("--at", type=int, default=None, metavar="MS",
                        help="when, UTC epoch ms (default: now)")
    deploy.add_argument("--environment", default="", help="e.g. prod (default: none)")
    deploy.add_argument("--note", default="", help="free text (default: none)")
    mlflow = _command(commands, "import-mlflow", "import model versions, aliases and stages "
                      "from an MLflow model registry",
                      f"{epilog}\n{_wrap(_MLFLOW_VARIABLES)}", _registry_import_mlflow,
                      extra="registry")
    mlflow.add_argument("--url", default=None,
                        help="the MLflow tracking server's base URL, e.g. http://mlflow:5000 "
                             "(default: $MLFLOW_TRACKING_URI)")
    mlflow.add_argument("--model", action="append", default=None, dest="models",
                        metavar="NAME", help="import only this registered model; repeatable "
                                             "(default: every registered model)")
    mlflow.add_argument("--token", default=None,
                        help="bearer token the server wants; the variable keeps it out of the "
                             "process list (default: $MLFLOW_TRACKING_TOKEN)")
    mlflow.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="limit on each request to the server (default: %(default)s)")


_MLFLOW_VARIABLES = ("It also reads MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN, as the mlflow "
                     "client does. Importing again publishes the same records, so it can run "
                     "on a schedule.")


def _add_ui_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = _command(sub, "ui", "serve a read-only web page of the results in ClickHouse",
                  _reads(("ClickHouse", _CLICKHOUSE)), _ui, extra="ui")
    ui.add_argument("--host", default="127.0.0.1",
                    help="the address to listen on; 0.0.0.0 lets anyone who reaches this "
                         "machine read every model's results (default: %(default)s)")
    ui.add_argument("--port", type=int, default=8765,
                    help="the port to listen on (default: %(default)s)")


def _add_build_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _reads(("profile", "HISTOGRAM_BINS FINE_HISTOGRAM_BINS TOP_K_CATEGORIES"))
    build = _command(sub, "build", "profile a training data file", epilog, _reference_build,
                     extra="reference")
    build.add_argument("--model", required=True, help="the model's name (required)")
    build.add_argument("--version", required=True, help="the model version (required)")
    build.add_argument("--input", required=True, type=Path,
                       help=".csv, .parquet or .jsonl file, one row per event (required)")
    build.add_argument("--exclude", action="append", default=[], metavar="COLUMNS",
                       help="comma-separated columns to leave out (ids, labels, timestamps); "
                            "repeatable (default: none)")
    build.add_argument("--out", type=Path, default=None,
                       help="where the profile JSON goes (default: MODEL-VERSION.reference.json)")
    build.add_argument("--bins", type=int, default=None,
                       help="coarse bins (default: DRIFTLINE_HISTOGRAM_BINS)")
    build.add_argument("--fine-bins", type=int, default=None,
                       help="fine bins (default: DRIFTLINE_FINE_HISTOGRAM_BINS)")
    build.add_argument("--top-k", type=int, default=None,
                       help="categories kept (default: DRIFTLINE_TOP_K_CATEGORIES)")
    build.add_argument("--categorical-max-distinct", type=int, default=20,
                       help="numeric columns with at most this many values are categorical "
                            "(default: %(default)s)")


def _add_publish_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _reads(("Kafka", f"{_KAFKA} MAX_MESSAGE_BYTES"),
                    ("topic", "REFERENCES_TOPIC REPLICATION_FACTOR"), ("ClickHouse", _CLICKHOUSE))
    publish = _command(sub, "publish", "make profile files live: publish them to Kafka and "
                       "ClickHouse", epilog, _reference_publish, extra="reference")
    publish.add_argument("files", nargs="+", type=Path, metavar="PROFILE_JSON",
                         help="profile files written by `driftline reference build`")


def _add_agent_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    epilog = _reads(("Kafka", _KAFKA),
                    ("topic", "TELEMETRY_TOPIC PARTITIONS REPLICATION_FACTOR"),
                    ("agent", "AGENT_INTERVAL_SECONDS AGENT_BUFFER AGENT_PIDS "
                              "AGENT_PROCESS_PATTERN AGENT_MODELS AGENT_MODEL_ARG_PATTERN "
                              "AGENT_HOST AGENT_METRICS_PORT METRICS_HOST"))
    agent = _command(sub, "agent", "publish this host's GPU and host telemetry", epilog, _agent,
                     extra="agent")
    agent.add_argument("--replay", metavar="RECORDING",
                       help="GPU readings from a recording instead of NVML: a shipped name "
                            "(h100x2, h100x2-steady) or a recording JSON file (default: NVML)")
    agent.add_argument("--once", action="store_true",
                       help="print one sample as JSON to stdout and exit, without Kafka")


# -- commands ---------------------------------------------------------------------


def _plan(args: argparse.Namespace, settings: Settings) -> TrafficPlan:
    from driftline.streams.demo.traffic import TrafficPlan

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
                                judge_after_seconds=min(settings.judge_after_seconds, 120),
                                outcome_judge_after_seconds=min(
                                    settings.outcome_judge_after_seconds, 120))
    return run_demo(settings, _plan(args, settings), args.home, console,
                    ui_port=None if args.no_ui else args.ui_port)


def _ui(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.ui import serve

    def ready(url: str) -> None:
        console.print(f"driftline ui: {url} (read-only; ClickHouse database "
                      f"{settings.clickhouse_database}); Ctrl-C stops it", highlight=False)

    serve(settings, args.host, args.port, on_ready=ready)
    return 0


def _registry_import_mlflow(args: argparse.Namespace, settings: Settings,
                            console: Console) -> int:
    from driftline.streams.registry.mlflow_import import import_mlflow

    url = args.url or os.environ.get("MLFLOW_TRACKING_URI")
    if not url:
        raise ValueError("pass the MLflow tracking server's URL: --url, or MLFLOW_TRACKING_URI")
    token = args.token or os.environ.get("MLFLOW_TRACKING_TOKEN") or None
    report = asyncio.run(import_mlflow(settings, url, args.models, token,
                                       timeout_s=args.timeout))
    for skipped in report.skipped:
        console.print(f"[yellow]skipped {skipped}[/]", highlight=False)
    console.print(f"{report.summary()} to {settings.registry_topic}", highlight=False)
    return 0


def _registry_version(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.models.registry.records import ModelVersion
    from driftline.streams.registry import publish_model_version

    record = ModelVersion(
        args.model, args.version, args.created_at or time.time_ns() // 1_000_000,
        training_run_id=args.training_run_id, code_revision=args.code_revision,
        training_data=args.training_data, reference_profile_id=args.reference_id,
        parameters=dict(_pairs(args.param, "--param")),
        training_metrics={k: _number(v, "--metric") for k, v in _pairs(args.metric, "--metric")},
        description=args.description)
    asyncio.run(publish_model_version(settings, record))
    console.print(f"registered {record.model} {record.version} on {settings.registry_topic}")
    return 0


def _registry_deploy(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.models.registry.records import Deployment
    from driftline.streams.registry import publish_deployment

    record = Deployment(args.model, args.version, args.event,
                        args.at or time.time_ns() // 1_000_000, traffic_share=args.share,
                        environment=args.environment, note=args.note)
    asyncio.run(publish_deployment(settings, record))
    console.print(f"{record.model} {record.version}: {record.event.replace('_', ' ')} "
                  f"({record.traffic_share:.0%} of traffic)")
    return 0


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, str]]:
    pairs = [item.split("=", 1) for item in items]
    for pair in pairs:
        if len(pair) != 2 or not pair[0]:
            raise ValueError(f"{flag} takes NAME=VALUE, got {'='.join(pair)!r}")
    return [(k, v) for k, v in pairs]


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag} values are numbers, got {text!r}") from None


def _worker(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    import faust

    from driftline.streams.worker.assembly import create_worker
    from driftline.streams.worker.topics import ensure_topics

    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    worker = create_worker(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    # What is imported and built by now lives as long as the worker: kept out of the
    # collector's full passes, which then scan only what processing creates.
    gc.freeze()
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


def _reference_build(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.reference.profiles import build_command

    return build_command(args, settings, console)


def _reference_publish(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.reference.profiles import publish_command

    return publish_command(args, settings, console)


def _agent(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from driftline.streams.agent import ReplayBackend, TelemetryAgent

    # Logs go to stderr, so that `--once` prints nothing but the sample on stdout.
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = ReplayBackend.load(args.replay) if args.replay else None
    agent = TelemetryAgent(settings, backend=backend)
    if settings.agent_metrics_port and not args.once:
        from driftline.streams.agent.metrics import serve_agent_metrics

        serve_agent_metrics(agent, settings.metrics_host, settings.agent_metrics_port)
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
