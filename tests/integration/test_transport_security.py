"""TLS and passwords on the wire, against real servers: ClickHouse over HTTPS with a user
and password, a broker that demands SASL, and the log of a real worker kept free of secrets.

chdb's server listens on HTTP and TCP only (``SYSTEM START LISTEN HTTPS`` is refused), so
TLS is terminated by a small proxy started here, with a certificate from a test CA
(trustme, ``tls_files`` in tests/conftest.py); the server behind it checks the password.
The embedded broker (tansu 0.6.0) has no TLS listener, offers SCRAM but not PLAIN, and
cannot be given a user while it demands authentication (README, "What you can rely on"):
the Kafka tests here show that driftline's clients do speak SASL to such a broker and
that a refused login leaks no password.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from driftline.sinks.clickhouse import ClickHouseSink, DeadLetter, SinkBatch
from driftline.sinks.clickhouse_options import clickhouse_client_options
from driftline.streams.embedded import _process
from driftline.streams.embedded.broker import EmbeddedBroker, _broker_binary
from driftline.streams.publisher import AsyncPublisher
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

USER = "driftline"
PASSWORD = "ch-pw-" + uuid.uuid4().hex[:12]

_USERS_XML = f"""<clickhouse>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <{USER}><password>{PASSWORD}</password><networks><ip>::/0</ip></networks>
      <profile>default</profile><quota>default</quota>
      <access_management>1</access_management></{USER}>
  </users>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
</clickhouse>
"""
# The embedded server's own entry point, told to read users.xml next to its config.xml.
_SERVER = """
import sys
from driftline.streams.embedded import _clickhouse_server as server
server.CONFIG = ("<clickhouse><http_port>{port}</http_port><listen_host>127.0.0.1</listen_host>"
                 "<users_config>users.xml</users_config></clickhouse>")
sys.exit(server.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def certificate(tls_files: tuple[Path, Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, signed by the test CA (``tls_files[0]``)."""
    return tls_files[1], tls_files[2]


@pytest.fixture(scope="module")
def password_clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A ClickHouse server (chdb) whose user ``USER`` needs ``PASSWORD``; yields its port."""
    home = tmp_path_factory.mktemp("clickhouse-users")
    work = home / "work"
    work.mkdir()
    (work / "users.xml").write_text(_USERS_XML)
    port = _process.free_port()
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, "--port", str(port), "--data-dir",
             str(home / "data"), "--work-dir", str(work)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for_ping(port, proc, home / "server.log")
        yield port
    finally:
        with contextlib.suppress(OSError):
            (work / "control.fifo").write_text("stop\n")
        _process.terminate(proc, grace=10.0)


@pytest.fixture(scope="module")
def https_url(password_clickhouse: int, certificate: tuple[Path, Path]) -> Iterator[str]:
    """``https://127.0.0.1:PORT``: TLS with ``certificate``, in front of the password server."""
    with TlsProxy(certificate, password_clickhouse) as proxy:
        yield f"https://127.0.0.1:{proxy.port}"


@pytest.fixture
def https_settings(https_url: str, tls_files: tuple[Path, Path, Path],
                   unique_name: str) -> Settings:
    return Settings().replace(clickhouse_url=https_url, clickhouse_user=USER,
                              clickhouse_password=PASSWORD, clickhouse_ca_file=str(tls_files[0]),
                              clickhouse_database=f"tls_{unique_name}")


def _wait_for_ping(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ClickHouse exited: {log.read_text(errors='replace')[-2000:]}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            connection.request("GET", "/ping")
            if connection.getresponse().read() == b"Ok.\n":
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"ClickHouse did not answer on port {port}")


class TlsProxy:
    """Accepts TLS on a free port and relays the plain bytes to ``127.0.0.1:upstream``.

    Runs its own event loop in a thread, so sync and async tests and child processes can
    all use it.
    """

    def __init__(self, certificate: tuple[Path, Path], upstream: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*certificate)
        self.upstream = upstream
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context),
            self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            client_out.close()
            return
        self._writers |= {client_out, server_out}
        try:
            await asyncio.gather(_pipe(client_in, server_out), _pipe(server_in, client_out))
        finally:
            self._writers -= {client_out, server_out}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


# -- ClickHouse over HTTPS --------------------------------------------------------


async def test_sink_writes_over_https_as_a_password_user(https_settings: Settings) -> None:
    sink = ClickHouseSink(https_settings)
    await sink.start()
    try:
        await sink.write(SinkBatch(revision=1, partition=0, dead_letters=[DeadLetter(
            topic="predictions", partition=0, offset=7, reason="test", key=b"k", value=b"v")]))
        user = await sink.client.query("SELECT currentUser()")
        rows = await sink.client.query(
            f"SELECT source_offset FROM {https_settings.clickhouse_database}.dead_letters")
    finally:
        await sink.close()
    assert user.result_rows == [(USER,)]
    assert rows.result_rows == [(7,)]


async def test_a_wrong_password_is_one_line_that_says_what_to_check(
        https_settings: Settings) -> None:
    wrong = "wrong-" + PASSWORD
    sink = ClickHouseSink(https_settings.replace(clickhouse_password=wrong))
    with pytest.raises(OperationalError) as failed:
        await sink.start()
    message = str(failed.value)
    assert "\n" not in message
    assert f"refused user {USER!r}" in message
    assert "DRIFTLINE_CLICKHOUSE_PASSWORD" in message
    assert wrong not in message and PASSWORD not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


async def test_an_untrusted_certificate_is_refused_with_what_to_set(
        https_settings: Settings) -> None:
    sink = ClickHouseSink(https_settings.replace(clickhouse_ca_file=None))
    with pytest.raises(OperationalError) as failed:
        await sink.start()
    message = str(failed.value)
    assert "\n" not in message
    assert "not trusted (unable to get local issuer certificate)" in message
    assert "DRIFTLINE_CLICKHOUSE_CA_FILE" in message
    assert PASSWORD not in message


async def test_an_https_url_on_any_port_is_spoken_to_in_tls(https_settings: Settings) -> None:
    """clickhouse-connect alone would send plain HTTP to https://host:PORT unless PORT is
    443 or 8443; the proxy would then see no TLS handshake and drop the connection."""
    assert not https_settings.clickhouse_url.endswith((":443", ":8443"))
    client = await clickhouse_connect.get_async_client(
        **clickhouse_client_options(https_settings))
    try:
        assert (await client.query("SELECT 1")).result_rows == [(1,)]
    finally:
        await client.close()


# -- Kafka SASL -------------------------------------------------------------------


class AuthenticatingBroker(EmbeddedBroker):
    """The embedded broker, told to demand SASL authentication from every client."""

    def launch(self) -> None:
        if self._proc is not None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://{self.bootstrap}"
        self._proc = _process.spawn(
            [str(_broker_binary()), "broker", "--listener-url", listener,
             "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/",
             "--authentication"], self.log_path, signal.SIGKILL)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with AuthenticatingBroker(tmp_path_factory.mktemp("sasl-broker")) as broker:
        yield broker


def sasl_settings(broker: EmbeddedBroker, password: str, mechanism: str) -> Settings:
    return Settings().replace(kafka_bootstrap=broker.bootstrap, broker_flavor="tansu",
                              kafka_security_protocol="SASL_PLAINTEXT",
                              kafka_sasl_mechanism=mechanism, kafka_sasl_username="driftline",
                              kafka_sasl_password=password)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_the_publisher_logs_in_with_sasl_and_a_refusal_leaks_no_password(
        sasl_broker: EmbeddedBroker, mechanism: str, caplog: pytest.LogCaptureFixture) -> None:
    """The broker offers SCRAM but knows no user (so the login fails after the exchange),
    and refuses PLAIN at the handshake; either way nothing is sent and, even at DEBUG,
    the password is in no log record."""
    password = "kafka-pw-" + uuid.uuid4().hex[:12]
    publisher = AsyncPublisher.from_settings(sasl_settings(sasl_broker, password, mechanism))
    caplog.set_level(logging.DEBUG)
    await publisher.start()
    try:
        publisher.log_prediction("m", "v1", "r-1", {"x": 1.0})
        await asyncio.sleep(1.0)
    finally:
        await publisher.close(grace=0.5)
    assert publisher.stats.sent_events == 0
    assert f"SaslHandShakeRequest_v1(mechanism='{mechanism}')" in caplog.text
    assert "cannot reach Kafka" in caplog.text
    assert password not in caplog.text


# -- a real worker's log -----------------------------------------------------------


@pytest.mark.parametrize("refused_by", ["clickhouse", "kafka"])
def test_a_refused_worker_logs_no_secret(
        refused_by: str, worker_settings: Callable[..., Settings], https_settings: Settings,
        sasl_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A real ``driftline worker`` whose ClickHouse refuses its password (it waits and
    says so) or whose broker refuses its SASL login (it stops): its log names the failure
    and neither password."""
    kafka_password = "kafka-pw-" + uuid.uuid4().hex[:12]
    wrong_password = "ch-pw-" + uuid.uuid4().hex[:12]
    settings = worker_settings().replace(
        clickhouse_url=https_settings.clickhouse_url, clickhouse_user=USER,
        clickhouse_password=wrong_password, clickhouse_ca_file=https_settings.clickhouse_ca_file,
        kafka_sasl_username="driftline", kafka_sasl_password=kafka_password)
    if refused_by == "kafka":
        settings = settings.replace(kafka_bootstrap=sasl_broker.bootstrap,
                                    kafka_security_protocol="SASL_PLAINTEXT",
                                    kafka_sasl_mechanism="SCRAM-SHA-256")
    expected = {"clickhouse": f"refused user {USER!r}", "kafka": "sasl"}[refused_by]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        deadline = time.monotonic() + 60
        while expected not in worker.log_path.read_text(errors="replace").lower():
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert kafka_password not in log and wrong_password not in log
