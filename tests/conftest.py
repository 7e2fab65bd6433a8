"""Test-wide settings: hypothesis without per-example deadlines (CI machines are shared
and slow), and with a fixed seed on CI so a run there is reproducible; tests marked
``chaos`` run only when asked for (``pytest -m chaos``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trustme
from hypothesis import settings

settings.register_profile("driftline", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, print_blob=True, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "driftline")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out ``chaos`` tests unless the ``-m`` expression names them."""
    if "chaos" in (config.getoption("markexpr", "") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("chaos") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """PEM files (ca, cert, key): a test CA, and a certificate for 127.0.0.1 it signed,
    with its key."""
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("tls")
    ca, cert, key = where / "ca.pem", where / "cert.pem", where / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    server.private_key_pem.write_to_path(str(key))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(cert), append=i > 0)
    return ca, cert, key
