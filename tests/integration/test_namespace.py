"""A user's project that has its own ``models.py``, or ``models/`` and ``streams/``
packages (most serving and training code does), imports driftline's publisher and
reference builder beside them, and both work: the events reach the real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

#: The user's serving code: its own modules first, then driftline's public API.
SERVE = """
import sys

from models import predict            # the project's own models.py or models/
{extra_import}
from driftline import Publisher, profile_from_frame

profile = profile_from_frame("churn", "v3", {{"tenure": [1.0, 5.0, 9.0, 12.0] * 25,
                                            "plan": ["basic", "pro"] * 50}})
with Publisher(sys.argv[1], predictions_topic=sys.argv[2]) as publisher:
    for i in range(10):
        features = {{"tenure": float(i), "plan": "pro"}}
        publisher.log_prediction("churn", "v3", f"r-{{i}}", features, prediction=predict(i))
    assert publisher.flush(timeout=30)
print(sorted(profile.features), publisher.stats.sent_events)
"""

PROJECTS = {
    "models.py": {"models.py": "def predict(i):\n    return i % 2\n"},
    "models/ and streams/ packages": {
        "models/__init__.py": "from models.reference_build import predict\n",
        "models/reference_build.py": "def predict(i):\n    return i % 2\n",
        "streams/__init__.py": "",
        "streams/publisher.py": "NAME = 'the project\\'s own streams.publisher'\n",
        "sinks/__init__.py": "",
    },
}


@pytest.fixture
async def topic(embedded_stack: Any, unique_name: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(embedded_stack))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"predictions-{unique_name}", 1, 1)])
    finally:
        await admin.close()
    return f"predictions-{unique_name}"


@pytest.mark.parametrize("layout", list(PROJECTS))
async def test_a_project_with_its_own_models_and_streams_uses_driftline(
        layout: str, tmp_path: Path, embedded_stack: Any, topic: str) -> None:
    for name, text in PROJECTS[layout].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    extra = ("from streams.publisher import NAME\nassert NAME.startswith('the project')"
             if "streams/" in layout else "")
    (tmp_path / "serve.py").write_text(SERVE.format(extra_import=extra))
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "serve.py", _bootstrap(embedded_stack), topic],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["['plan',", "'tenure']", "10"]

    envelopes = await _read(embedded_stack, topic)
    request_ids = [r for e in envelopes for r in e["request_id"]]
    assert sorted(request_ids) == sorted(f"r-{i}" for i in range(10))
    assert {(e["model"], e["version"]) for e in envelopes} == {("churn", "v3")}
    predictions = dict(zip(request_ids, [p for e in envelopes for p in e["prediction"]],
                           strict=True))
    assert predictions == {f"r-{i}": i % 2 for i in range(10)}


async def _read(embedded_stack: Any, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=_bootstrap(embedded_stack),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5_000)
        return [orjson.loads(r.value or b"{}") for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()


def _bootstrap(embedded_stack: Any) -> str:
    return str(embedded_stack.settings_overrides()["kafka_bootstrap"])
