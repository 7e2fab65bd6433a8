"""Integration fixtures: the real embedded broker and ClickHouse server, once per session.

Tests share the servers, so each builds its own topics and databases from ``unique_name``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from driftline.streams.embedded.stack import EmbeddedStack
from driftline.streams.settings import Settings
from driftline.streams.worker.topics import ensure_topics


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A broker and a ClickHouse server on free ports, data in a session temp dir."""
    with EmbeddedStack(tmp_path_factory.mktemp("embedded")) as stack:
        yield stack


@pytest.fixture(scope="session")
def demo_data(embedded_stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
              ) -> Settings:
    """Settings whose database holds the demo's results (see demo_data.py), filled once."""
    from demo_data import demo_settings, fill

    settings = demo_settings(embedded_stack, tmp_path_factory.mktemp("demo-state"))
    fill(settings, tmp_path_factory.mktemp("demo-worker"))
    return settings


@pytest.fixture
def unique_name() -> str:
    """A fresh suffix for topic and database names, e.g. ``f"events_{unique_name}"``."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
def worker_settings(embedded_stack: EmbeddedStack, unique_name: str,
                    tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a worker on the embedded stack with this test's own topics, database
    and consumer group, quick to close windows; ``overrides`` for the rest. Creates the
    topics."""
    def make(**overrides: Any) -> Settings:
        settings = Settings().replace(
            **embedded_stack.settings_overrides(),
            predictions_topic=f"predictions-{unique_name}", labels_topic=f"labels-{unique_name}",
            dead_letter_topic=f"dead-letters-{unique_name}",
            alerts_topic=f"alerts-{unique_name}", references_topic=f"references-{unique_name}",
            telemetry_topic=f"telemetry-{unique_name}",
            lineage_topic=f"lineage-{unique_name}", pipelines_topic=f"pipelines-{unique_name}",
            traces_topic=f"traces-{unique_name}",
            service_chains_topic=f"service-chains-{unique_name}",
            service_hops_topic=f"service-hops-{unique_name}",
            registry_topic=f"registry-{unique_name}",
            retraining_topic=f"retraining-{unique_name}",
            clickhouse_database=f"t_{unique_name}", app_id=f"driftline-{unique_name}",
            state_dir=str(tmp_path / "state"), partitions=overrides.pop("partitions", 2),
            idle_close_seconds=2.0,
            checkpoint_seconds=0.5, **overrides)
        asyncio.run(ensure_topics(settings))
        return settings

    return make


@pytest.fixture
def clickhouse(settings: Settings) -> Iterator[Client]:
    """A ClickHouse client for the test's ``settings`` (each module defines that fixture)."""
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_url)
    yield client
    client.close()
