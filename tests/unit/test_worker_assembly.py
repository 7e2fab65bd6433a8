"""The worker app assembles without a broker: every agent module imports (Faust's
autodiscovery would swallow an import error), and topics, tables and agents are wired."""

from __future__ import annotations

import importlib

import pytest

from driftline.streams.settings import Settings
from driftline.streams.worker.agents import AGENT_MODULES
from driftline.streams.worker.assembly import create_worker


@pytest.mark.parametrize("name", AGENT_MODULES)
def test_every_agent_module_imports_and_attaches(name: str) -> None:
    assert callable(importlib.import_module(name).attach)


def test_worker_app_has_its_agent_table_and_topics(tmp_path: object) -> None:
    settings = Settings(app_id="assembly-test", predictions_topic="p", dead_letter_topic="d",
                        partitions=3, state_dir=str(tmp_path))
    worker = create_worker(settings)
    app = worker.app
    assert "track_feature_windows" in {agent.name.split(".")[-1] for agent in app.agents.values()}
    assert "window_states" in app.tables
    assert app.conf.topic_partitions == 3
    assert app.conf.processing_guarantee.value == "at_least_once"
