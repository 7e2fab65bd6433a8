"""Integration fixtures: the real embedded broker and ClickHouse server, once per session.

Tests share the servers, so each builds its own topics and databases from ``unique_name``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from streams.embedded.stack import EmbeddedStack


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A broker and a ClickHouse server on free ports, data in a session temp dir."""
    with EmbeddedStack(tmp_path_factory.mktemp("embedded")) as stack:
        yield stack


@pytest.fixture
def unique_name() -> str:
    """A fresh suffix for topic and database names, e.g. ``f"events_{unique_name}"``."""
    return uuid.uuid4().hex[:8]
