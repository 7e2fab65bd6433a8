"""The demo's pipeline: the job that refreshes fraud-detector's features reports its runs as
OpenLineage run events (the JSON its Kafka transport writes), every 3 minutes of the
simulated time, until it stops: its runs of the last 8 minutes never come, and the demo
ends with a missed-run alert."""

from __future__ import annotations

import datetime
import uuid

import orjson
from aiokafka import AIOKafkaProducer

from driftline.streams.demo.traffic import TrafficPlan
from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

JOB = ("airflow", "fraud_features")
EVERY_MINUTES = 3
#: The incident of the runs that never came: noticed once the worker's clock moves on
#: without them (its watermark into the quiet partition, DRIFTLINE_IDLE_CLOSE_SECONDS).
MISSED_RUN = f"pipeline:{JOB[0]}/{JOB[1]}::run:missed_run_minutes"
#: The schedule the demo's rules give the job (the demo writes them when none are set).
RULES = (f'[pipelines."{JOB[0]}/{JOB[1]}"]\nevery_minutes = {EVERY_MINUTES}\n'
         "grace_minutes = 1\n")


def run_events(plan: TrafficPlan) -> list[dict[str, object]]:
    """START and COMPLETE of each run, every 3 windows, none in the last 8."""
    start_ms = plan.start_ms or 0
    events: list[dict[str, object]] = []
    for i, window in enumerate(range(0, plan.windows - 7, EVERY_MINUTES)):
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"driftline-demo/{window}"))
        begin = start_ms + window * plan.window_ms + 20_000
        for kind, at in (("START", begin), ("COMPLETE", begin + 90_000 + 5_000 * i)):
            events.append({
                "eventType": kind, "eventTime": _iso(at), "producer": "https://airflow.apache.org",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "run": {"runId": run_id}, "job": {"namespace": JOB[0], "name": JOB[1]},
                "inputs": [{"namespace": "postgres", "name": "payments.transactions"}],
                "outputs": [{"namespace": "warehouse", "name": "features.fraud"}]})
    return events


async def publish_runs(settings: Settings, plan: TrafficPlan) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                                **kafka_client_options(settings))
    await producer.start()
    try:
        for event in run_events(plan):  # keyed as OpenLineage's transport keys run events
            await producer.send_and_wait(settings.lineage_topic, orjson.dumps(event),
                                         key=f"run:{JOB[0]}/{JOB[1]}".encode())
    finally:
        await producer.stop()


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat()
