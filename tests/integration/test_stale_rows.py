"""Rows written before Kafka offsets restarted never win over the rows written after, on
the real embedded ClickHouse: the tables' version is the time of the write, not an offset.

Each test first writes what older code left behind, rows whose ``revision`` is a high
source offset, then writes the same keys anew, as after a recreated topic whose offsets
start again at 0, and reads them back with ``FINAL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from driftline.models.quality.label_join import Label, Prediction, join
from driftline.models.telemetry.aggregates import (
    GPU_METRICS,
    HOST_METRICS,
    GpuWindowRow,
    HostWindowRow,
)
from driftline.models.telemetry.series import MetricSummary
from driftline.models.windows.feature_windows import FeatureWindowRow
from driftline.sinks.clickhouse import ClickHouseSink, SinkBatch
from driftline.sinks.label_store import LabelStore
from driftline.sinks.schema import statements
from driftline.sinks.telemetry_store import TelemetryStore
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000  # a window boundary
OLD = 10**9  # the source offset an earlier log had reached
DAY = 86_400_000


@pytest.fixture
def settings(worker_settings: Callable[..., Settings]) -> Settings:
    return worker_settings(bin_edges={"x": (-1.0, 0.0, 1.0)})


@pytest.fixture
def db(settings: Settings, clickhouse: Client) -> Iterator[str]:
    for ddl in statements(settings.clickhouse_database):
        clickhouse.command(ddl)
    yield settings.clickhouse_database
    clickhouse.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database} SYNC")


@pytest.fixture
async def client(settings: Settings, db: str) -> AsyncIterator[Any]:
    async_client = await clickhouse_connect.get_async_client(dsn=settings.clickhouse_url)
    yield async_client
    await async_client.close()


def window_row(count: int, mean: float) -> FeatureWindowRow:
    return FeatureWindowRow("alpha", "v1", "x", "numeric", T0, T0 + W, count, 0, mean, 1.0,
                            -2.0, 2.0, (), (-1.0, 0.0, 1.0), (0, count, 0, 0), (), (), 0)


def test_the_sink_replaces_a_window_an_offset_revision_wrote(settings: Settings, db: str,
                                                             clickhouse: Client) -> None:
    clickhouse.command(
        f"INSERT INTO {db}.feature_windows (model, model_version, feature, kind, window_start,"
        f" window_end, count, missing_count, mean, revision) VALUES ('alpha', 'v1', 'x',"
        f" 'numeric', fromUnixTimestamp64Milli({T0}), fromUnixTimestamp64Milli({T0 + W}), 7,"
        f" 0, 9.5, {OLD})")

    async def write() -> None:
        async with ClickHouseSink(settings) as sink:
            # The new log is at offset 3: its batch revision is far below the stored one.
            await sink.write(SinkBatch(revision=3, partition=0, windows=[window_row(40, 0.25)]))

    asyncio.run(write())
    rows = clickhouse.query(f"SELECT count, mean, revision > {OLD} FROM {db}.feature_windows"
                            " FINAL WHERE model = 'alpha'").result_rows
    assert rows == [(40, 0.25, 1)]


def summary(value: float) -> MetricSummary:
    return MetricSummary(1, 0, value, value, value)


async def test_telemetry_windows_of_a_restarted_log_win(client: Any, db: str,
                                                        clickhouse: Client) -> None:
    for table, key in (("gpu_windows", "host, gpu_index, gpu_uuid, gpu_name, "),
                       ("host_windows", "host, ")):
        values = "'h1', 0, 'GPU-0', 'H100', " if table == "gpu_windows" else "'h1', "
        clickhouse.command(
            f"INSERT INTO {db}.{table} ({key}window_start, window_end, samples, revision)"
            f" VALUES ({values}fromUnixTimestamp64Milli({T0}),"
            f" fromUnixTimestamp64Milli({T0 + W}), 99, {OLD})")
    gpu = GpuWindowRow("h1", 0, "GPU-0", "H100", T0, T0 + W, ("alpha",), 6,
                       {m: summary(50.0) for m in GPU_METRICS}, 0, 0, (), 0, (), 0, 0, {})
    host = HostWindowRow("h1", T0, T0 + W, ("alpha",), 6,
                         {m: summary(25.0) for m in HOST_METRICS})
    await TelemetryStore(client, db).write([gpu], [host], 2)
    assert clickhouse.query(f"SELECT samples, temperature_c_max FROM {db}.gpu_windows FINAL"
                            ).result_rows == [(6, 50.0)]
    assert clickhouse.query(f"SELECT samples, cpu_percent_mean FROM {db}.host_windows FINAL"
                            ).result_rows == [(6, 25.0)]


def ttl(model: str) -> int:
    return DAY


async def test_labels_an_offset_revision_wrote_are_replaced_and_settled(
        client: Any, db: str, clickhouse: Client) -> None:
    # What older code left, before label_revision existed: the label's place in the log
    # was the version, and a settled copy went one above it.
    for table in ("waiting_labels", "labeled_predictions"):
        clickhouse.command(f"ALTER TABLE {db}.{table} DROP COLUMN label_revision")
    old = OLD * 1_000_000
    clickhouse.command(
        f"INSERT INTO {db}.waiting_labels (model, request_id, event_time, label, revision,"
        f" settled) VALUES ('m', 'early', fromUnixTimestamp64Milli({T0 + W}), 'fraud', {old},"
        f" 0), ('m', 'fixed', fromUnixTimestamp64Milli({T0 + W}), 'fraud', {old}, 0)")
    clickhouse.command(
        f"INSERT INTO {db}.labeled_predictions (model, model_version, window_start,"
        f" request_id, prediction_time, label_time, delay_seconds, prediction, label,"
        f" revision) VALUES ('m', 'v1', fromUnixTimestamp64Milli({T0}), 'paired',"
        f" fromUnixTimestamp64Milli({T0}), fromUnixTimestamp64Milli({T0 + W}), 60, 'fraud',"
        f" 'fraud', {old})")
    for ddl in statements(db):  # start-up adds label_revision, from the old revision
        clickhouse.command(ddl)
    store = LabelStore(client, db)
    waiting = await store.waiting([("m", "early"), ("m", "fixed")])
    assert {k[1]: lb.revision for k, lb in waiting.items()} == {"early": old, "fixed": old}

    # The restarted log: a prediction for "early" settles its waiting label...
    prediction = Prediction("m", "v1", "early", T0, "fraud")
    settle = join([prediction], [], window_ms=W, ttl_ms=ttl, stored_labels=waiting)
    await store.put_predictions([prediction])
    await store.put_pairs(settle.labeled)
    await store.put_waiting(settle.waiting, [waiting[k] for k in settle.settled])
    # ...a label lands where the one "fixed" waits with had been, and says something else...
    fix = join([], [Label("m", "fixed", T0 + 2 * W, "ok", revision=old)], window_ms=W,
               ttl_ms=ttl, stored_labels=await store.waiting([("m", "fixed")]))
    await store.put_waiting(fix.waiting)
    # ...and the pair of "paired" is written again with another label at its place.
    paired = Prediction("m", "v1", "paired", T0, "fraud")
    stored = await store.pairs([("m", "paired")], W)
    relabel = join([], [Label("m", "paired", T0 + 2 * W, "ok", revision=old)], window_ms=W,
                   ttl_ms=ttl, stored_predictions={("m", "paired"): paired},
                   stored_pairs=stored)
    await store.put_pairs(relabel.labeled)

    assert clickhouse.query(f"SELECT request_id, label FROM {db}.waiting_labels FINAL"
                            ).result_rows == [("fixed", "ok")]
    rows = clickhouse.query(f"SELECT request_id, label, label_revision FROM"
                            f" {db}.labeled_predictions FINAL ORDER BY request_id").result_rows
    assert rows == [("early", "fraud", old), ("paired", "ok", old)]


async def publish(settings: Settings, n: int) -> None:
    async with AsyncPublisher.from_settings(settings) as publisher:
        for i in range(n):
            assert publisher.log_prediction("alpha", "v1", f"r{i}", {"x": 0.5},
                                            event_time_ms=T0 + i * (W // n))
        # An event three windows on closes the first.
        assert publisher.log_prediction("alpha", "v1", "next", {"x": 0.5},
                                        event_time_ms=T0 + 3 * W)
        await publisher.flush()


def test_a_worker_on_a_fresh_topic_overwrites_what_an_older_log_left(
        settings: Settings, db: str, clickhouse: Client, tmp_path: Path) -> None:
    clickhouse.command(
        f"INSERT INTO {db}.feature_windows (model, model_version, feature, kind, window_start,"
        f" window_end, count, missing_count, mean, revision) VALUES ('alpha', 'v1', 'x',"
        f" 'numeric', fromUnixTimestamp64Milli({T0}), fromUnixTimestamp64Milli({T0 + W}), 7,"
        f" 0, 9.5, {OLD})")
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(publish(settings, 30))  # the topic is new: offsets from 0
        query = (f"SELECT count, mean FROM {db}.feature_windows FINAL WHERE model = 'alpha'"
                 f" AND feature = 'x' AND window_start = fromUnixTimestamp64Milli({T0})")
        deadline = time.monotonic() + 90
        while clickhouse.query(query).result_rows != [(30, 0.5)]:
            assert worker.is_running(), worker.log_tail()
            assert time.monotonic() < deadline, (clickhouse.query(query).result_rows,
                                                 worker.log_tail())
            time.sleep(0.5)
    finally:
        worker.stop()
