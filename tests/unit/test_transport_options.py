"""Settings -> the TLS and SASL options of every Kafka client (aiokafka's and Faust's) and
the options of every ClickHouse client, and secrets kept out of what gets printed.

The embedded broker speaks neither TLS nor a SASL login that can succeed (README, "What
you can rely on"), so for Kafka this mapping is what is tested; against a real Kafka these
are aiokafka's own options.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import clickhouse_connect
import faust
import pytest
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    OperationalError,
)
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from driftline.sinks.clickhouse import ClickHouseSink
from driftline.sinks.clickhouse_options import clickhouse_client_options, connect_error
from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.reference import profiles
from driftline.streams.settings import Settings
from driftline.streams.worker.app import _credentials, build_app

KAFKA_SECRET = "kafka-pw-5e8b1c"
CLICKHOUSE_SECRET = "ch-pw-77d0a2"


@pytest.fixture
def ssl_files(tls_files: tuple[Path, Path, Path]) -> dict[str, str]:
    """Kafka's TLS settings with the test CA and a certificate it signed."""
    ca, cert, key = (str(path) for path in tls_files)
    return {"kafka_ssl_cafile": ca, "kafka_ssl_certfile": cert, "kafka_ssl_keyfile": key}


def secured(**changes: Any) -> Settings:
    return Settings().replace(kafka_sasl_username="driftline", kafka_sasl_password=KAFKA_SECRET,
                              clickhouse_password=CLICKHOUSE_SECRET, **changes)


def faust_options(settings: Settings) -> dict[str, Any]:
    """What Faust hands aiokafka for the app built from ``settings``."""
    return dict(credentials_to_aiokafka_auth(build_app(settings).conf.broker_credentials))


def assert_verifies_with_ca(context: Any) -> None:
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1  # exactly the CA file, not the system's


# -- Kafka ------------------------------------------------------------------------


def test_plaintext_is_the_default_with_no_tls_and_no_sasl() -> None:
    assert kafka_client_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert _credentials(Settings()) is None
    assert faust_options(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_plaintext_defaults_to_plain() -> None:
    settings = secured(kafka_security_protocol="SASL_PLAINTEXT")
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "driftline", "sasl_plain_password": KAFKA_SECRET}
    assert kafka_client_options(settings) == expected
    assert faust_options(settings) == {**expected, "ssl_context": None}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_verifies_the_broker_and_logs_in(mechanism: str,
                                                 ssl_files: dict[str, str]) -> None:
    settings = secured(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism,
                       kafka_ssl_cafile=ssl_files["kafka_ssl_cafile"])
    expected = {"security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
                "sasl_plain_username": "driftline", "sasl_plain_password": KAFKA_SECRET}
    for options in (kafka_client_options(settings), faust_options(settings)):
        context = options.pop("ssl_context")
        assert options == expected
        assert_verifies_with_ca(context)


def test_ssl_with_a_client_certificate(ssl_files: dict[str, str]) -> None:
    settings = secured(kafka_security_protocol="SSL", **ssl_files)
    for options in (kafka_client_options(settings), faust_options(settings)):
        assert options.keys() == {"security_protocol", "ssl_context"}
        assert options["security_protocol"] == "SSL"
        assert_verifies_with_ca(options["ssl_context"])
    credentials = _credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)


def test_the_faust_credentials_do_not_print_the_password() -> None:
    credentials = _credentials(secured(kafka_security_protocol="SASL_PLAINTEXT"))
    assert isinstance(credentials, faust.SASLCredentials)
    assert KAFKA_SECRET not in repr(credentials) and KAFKA_SECRET not in str(credentials)


# -- ClickHouse --------------------------------------------------------------------


def test_the_url_scheme_decides_tls_on_any_port() -> None:
    """clickhouse-connect infers TLS from ports 443 and 8443 only, never from the scheme."""
    https = clickhouse_client_options(Settings(clickhouse_url="https://ch.internal:9440"))
    http = clickhouse_client_options(Settings(clickhouse_url="http://ch.internal:8443"))
    assert (https["interface"], http["interface"]) == ("https", "http")


def test_clickhouse_options_carry_the_user_password_and_ca() -> None:
    settings = secured(clickhouse_url="https://ch.internal:8443", clickhouse_user="writer",
                       clickhouse_ca_file="/etc/driftline/ca.pem")
    assert clickhouse_client_options(settings) == {
        "dsn": "https://ch.internal:8443", "username": "writer",
        "password": CLICKHOUSE_SECRET, "ca_cert": "/etc/driftline/ca.pem",
        "interface": "https", "autogenerate_session_id": False}


def test_the_ca_file_is_read_from_its_variable() -> None:
    settings = Settings.from_env({"DRIFTLINE_CLICKHOUSE_CA_FILE": "/etc/ca.pem"})
    assert settings.clickhouse_ca_file == "/etc/ca.pem"
    assert Settings.from_env({}).clickhouse_ca_file is None
    assert Settings.from_env(settings.to_env()) == settings


class _Refusing:
    """Stands in for ``get_async_client``: records its options, then fails as told."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.options: dict[str, Any] = {}

    async def __call__(self, **options: Any) -> Any:
        self.options = options
        raise self.error


async def test_the_sink_and_reference_publishing_connect_with_the_same_options(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = secured(clickhouse_url="https://ch.internal:9440", clickhouse_ca_file="ca.pem")
    for connect in (ClickHouseSink(settings).start,
                    lambda: profiles._insert_rows(settings, [], 0)):
        refusing = _Refusing(OperationalError("no route to host"))
        monkeypatch.setattr(clickhouse_connect, "get_async_client", refusing)
        with pytest.raises(OperationalError):
            await connect()
        assert refusing.options == clickhouse_client_options(settings)


@pytest.mark.parametrize(("error", "says"), [
    (DatabaseError("Received ClickHouse exception, code: 516, server response: Code: 516. "
                   "DB::Exception: writer: Authentication failed: password is incorrect, or "
                   "there is no user with such name.\n\n(AUTHENTICATION_FAILED)", code=516),
     "refused user 'writer': wrong password, or no such user; check "
     "DRIFTLINE_CLICKHOUSE_USER and DRIFTLINE_CLICKHOUSE_PASSWORD"),
    (OperationalError("Network Error: Cannot connect to host ch.internal:9440 ssl:True "
                      "[SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
                      "certificate verify failed: unable to get local issuer certificate "
                      "(_ssl.c:1006)')]"),
     "is not trusted (unable to get local issuer certificate); set "
     "DRIFTLINE_CLICKHOUSE_CA_FILE"),
    (OperationalError(f"Network Error: refused for\n{CLICKHOUSE_SECRET} and url-pw-31"),
     "check that it runs and DRIFTLINE_CLICKHOUSE_URL"),
])
def test_a_failed_first_contact_is_one_line_without_secrets(error: ClickHouseError,
                                                             says: str) -> None:
    settings = secured(clickhouse_url="https://writer:url-pw-31@ch.internal:9440",
                       clickhouse_user="writer")
    message = str(connect_error(error, settings))
    assert "\n" not in message
    assert message.startswith(("ClickHouse at https://ch.internal:9440 ",
                               "the TLS certificate of ClickHouse at https://ch.internal:9440 ",
                               "cannot use ClickHouse at https://ch.internal:9440 "))
    assert says in message
    assert CLICKHOUSE_SECRET not in message and "url-pw-31" not in message


# -- settings as printed -------------------------------------------------------------


def test_settings_print_no_secret() -> None:
    settings = secured(kafka_security_protocol="SASL_SSL")
    for text in (repr(settings), str(settings), str(settings.redacted())):
        assert KAFKA_SECRET not in text and CLICKHOUSE_SECRET not in text
    assert settings.redacted()["clickhouse_password"] == "***"


def test_to_env_carries_the_secrets_for_the_child_process_only() -> None:
    """A worker child gets its settings through its environment, never its command line
    (see driftline.streams.worker.process); the integration tests read its log."""
    env = secured().to_env()
    assert env["DRIFTLINE_KAFKA_SASL_PASSWORD"] == KAFKA_SECRET
    assert env["DRIFTLINE_CLICKHOUSE_PASSWORD"] == CLICKHOUSE_SECRET
    assert Settings.from_env(env) == secured()


def test_the_worker_child_gets_no_secret_on_its_command_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from driftline.streams.worker import process

    launched: dict[str, Any] = {}

    def popen(argv: list[str], **kwargs: Any) -> Any:
        launched.update(argv=argv, env=kwargs["env"])
        return None

    monkeypatch.setattr(process.subprocess, "Popen", popen)
    process.WorkerProcess(secured(), tmp_path / "worker.log").start()
    assert not any(KAFKA_SECRET in a or CLICKHOUSE_SECRET in a for a in launched["argv"])
    assert launched["env"]["DRIFTLINE_CLICKHOUSE_PASSWORD"] == CLICKHOUSE_SECRET


def test_a_sasl_password_is_redacted_from_aiokafkas_connection_log(
        caplog: pytest.LogCaptureFixture) -> None:
    kafka_client_options(Settings(kafka_security_protocol="SASL_PLAINTEXT",
                                  kafka_sasl_username="svc", kafka_sasl_password="hunter2-xyz"))
    with caplog.at_level(logging.DEBUG, logger="aiokafka.conn"):
        # What aiokafka 0.14 logs of a SASL/PLAIN handshake at DEBUG.
        logging.getLogger("aiokafka.conn").debug(
            "Sending %r to %s", b"\x00svc\x00hunter2-xyz", "127.0.0.1:9092")
    assert caplog.records and "hunter2-xyz" not in caplog.text and "***" in caplog.text
