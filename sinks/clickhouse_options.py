"""Settings -> keyword arguments of clickhouse-connect clients (URL, user, password, TLS), and
the one-line error of a failed first contact, in one place.

clickhouse-connect takes host, port and user from a DSN but not its scheme: it would speak
plain HTTP to ``https://host:9440`` (only ports 443 and 8443 imply TLS). So the scheme is
passed on as the interface.

>>> options = clickhouse_client_options(Settings(clickhouse_url="https://ch.internal:9440",
...                                              clickhouse_ca_file="ca.pem"))
>>> options["interface"], options["ca_cert"]
('https', 'ca.pem')
>>> clickhouse_client_options(Settings())["interface"]
'http'
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from driftline.streams.settings import Settings

_AUTH_FAILED = 516
_UNTRUSTED = re.compile(r"certificate verify failed: ([^(\]\)]+)")


def clickhouse_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``clickhouse_connect.get_client`` / ``get_async_client``."""
    options: dict[str, Any] = {
        "dsn": settings.clickhouse_url,
        "username": settings.clickhouse_user,
        "password": settings.clickhouse_password,
        "ca_cert": settings.clickhouse_ca_file,
        # No session: the sink writes a batch's tables side by side, and ClickHouse runs
        # the queries of one session one at a time (refusing a second while one runs).
        "autogenerate_session_id": False,
    }
    scheme = urlsplit(settings.clickhouse_url).scheme.lower()
    if scheme in ("http", "https"):
        options["interface"] = scheme
    return options


def connect_error(error: ClickHouseError, settings: Settings) -> OperationalError:
    """``error`` as one line that says what failed and what to check.

    No password in it, whether it came from the settings or from the URL.
    """
    text = " ".join(str(error).split())
    where = public_url(settings.clickhouse_url)
    if getattr(error, "code", None) == _AUTH_FAILED or "AUTHENTICATION_FAILED" in text:
        message = (f"ClickHouse at {where} refused user {settings.clickhouse_user!r}: wrong "
                   "password, or no such user; check DRIFTLINE_CLICKHOUSE_USER and "
                   "DRIFTLINE_CLICKHOUSE_PASSWORD")
    elif untrusted := _UNTRUSTED.search(text):
        message = (f"the TLS certificate of ClickHouse at {where} is not trusted "
                   f"({untrusted.group(1).strip()}); set DRIFTLINE_CLICKHOUSE_CA_FILE to the "
                   "CA certificate (PEM) that signed it")
    else:
        message = (f"cannot use ClickHouse at {where} ({_redacted(text, settings)}); check "
                   "that it runs and DRIFTLINE_CLICKHOUSE_URL")
    return OperationalError(message)


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` in it.

    >>> public_url("https://admin:hunter2@ch.internal:8443/db")
    'https://ch.internal:8443/db'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _redacted(text: str, settings: Settings) -> str:
    secrets = [settings.clickhouse_password, urlsplit(settings.clickhouse_url).password or ""]
    for secret in filter(None, secrets):
        text = text.replace(secret, "***")
    return text[:300]
