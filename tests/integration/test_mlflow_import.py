"""Importing a real MLflow tracking server's model registry onto the embedded broker: the
server runs as a subprocess (once for the module), the mlflow client fills it as a training
pipeline would, and :func:`import_mlflow` reads it back through the REST API alone.

Also what a user sees when the server cannot be used: unreachable, not MLflow, asking for
a token or refusing one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag

from driftline.models.registry.records import Deployment, ModelVersion, decode_record
from driftline.streams.embedded import tansu_compat
from driftline.streams.registry import RegistryStore
from driftline.streams.registry.mlflow_import import (
    MlflowImportError,
    Skipped,
    import_mlflow,
)
from driftline.streams.settings import Settings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server`` on a free port, a SQLite store in a temp dir; stopped at the end
    with the processes it started (it leads its own process group)."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = home / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
             "--default-artifact-root", str(home / "artifacts")],
            cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # No background job runner: the registry needs none.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                 "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
            time.sleep(0.25)
        yield Server(url, log)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@dataclass
class Registry:
    """What the module's training pipeline put on the server."""

    fraud: str
    churn: str
    run_id: str
    churn_run_id: str
    versions: dict[tuple[str, str], Any]


@pytest.fixture(scope="module")
def registry(mlflow_server: Server) -> Iterator[Registry]:
    """Two models filled with the mlflow client: fraud v1 (trained by a run that logged
    params, metrics, its commit and its dataset; alias champion, stage Production), v2 (no
    run; alias challenger), v3 (the same run; archived); churn v1 (alias prod)."""
    suffix = uuid.uuid4().hex[:8]
    fraud, churn = f"fraud-{suffix}", f"churn-{suffix}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
        experiment = client.create_experiment(f"training-{suffix}")
        run = client.create_run(experiment, tags={"mlflow.source.git.commit": "3f2a9c1e"})
        run_id = run.info.run_id
        client.log_param(run_id, "max_depth", "8")
        client.log_param(run_id, "learning_rate", "0.1")
        client.log_metric(run_id, "auc", 0.91, step=0)
        client.log_metric(run_id, "auc", 0.94, step=1)
        client.log_metric(run_id, "loss", 0.2)
        features = Dataset(name="features_2026_11", digest="a1b2c3d4", source_type="s3",
                           source='{"uri": "s3://features/2026-11"}')
        client.log_inputs(run_id, datasets=[DatasetInput(
            features, tags=[InputTag("mlflow.data.context", "training")])])
        client.set_terminated(run_id)
        other = client.create_run(experiment)
        client.log_metric(other.info.run_id, "recall", 0.7)
        client.set_terminated(other.info.run_id)

        client.create_registered_model(fraud, description="flags fraud")
        client.create_model_version(fraud, source=f"runs:/{run_id}/model", run_id=run_id,
                                    description="first", tags={"driftline.reference_id": "p-1"})
        client.create_model_version(fraud, source="s3://models/fraud/2")
        client.create_model_version(fraud, source=f"runs:/{run_id}/model", run_id=run_id)
        client.set_registered_model_alias(fraud, "champion", "1")
        client.set_registered_model_alias(fraud, "challenger", "2")
        with pytest.warns(FutureWarning, match="stages"):  # legacy, still widely used
            client.transition_model_version_stage(fraud, "1", "Production")
            client.transition_model_version_stage(fraud, "3", "Archived")
        client.create_registered_model(churn)
        client.create_model_version(churn, source=f"runs:/{other.info.run_id}/model",
                                    run_id=other.info.run_id)
        client.set_registered_model_alias(churn, "prod", "1")
        versions = {(m, v): client.get_model_version(m, v)
                    for m, v in [(fraud, "1"), (fraud, "2"), (fraud, "3"), (churn, "1")]}
    yield Registry(fraud, churn, run_id, other.info.run_id, versions)


@pytest.fixture
def settings(embedded_stack: Any, unique_name: str) -> Settings:
    tansu_compat.install()  # as the worker does when broker_flavor == "tansu"
    return Settings().replace(**embedded_stack.settings_overrides(),
                              registry_topic=f"registry-{unique_name}")


async def read_topic(settings: Settings, count: int) -> list[tuple[bytes, bytes]]:
    """The first ``count`` messages on the registry topic, as (key, value)."""
    consumer = AIOKafkaConsumer(settings.registry_topic,
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [(r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return found


def run_fetches(server: Server, run_id: str) -> int:
    """How many times the server's access log shows ``run_id`` fetched."""
    return server.log.read_text().count(f"runs/get?run_id={run_id}")


async def test_the_registry_lands_on_the_topic_and_a_second_import_repeats_it_byte_for_byte(
        settings: Settings, mlflow_server: Server, registry: Registry) -> None:
    fetched_before = run_fetches(mlflow_server, registry.run_id)
    # One item per page, so every search is followed through its page tokens.
    report = await import_mlflow(settings, mlflow_server.url, page_size=1)
    assert (report.models, report.versions, report.deployments, report.skipped) == (2, 4, 4, [])
    assert "imported 2 models, 4 versions and 4 deployments" in report.summary()
    # fraud v1 and v3 share a run: it is fetched once.
    assert run_fetches(mlflow_server, registry.run_id) - fetched_before == 1

    first = await read_topic(settings, 8)
    records = {key: decode_record(value) for key, value in first}
    fraud, churn, v = registry.fraud, registry.churn, registry.versions
    assert records[f"version:{fraud}/1".encode()] == ModelVersion(
        fraud, "1", created_at_ms=v[fraud, "1"].creation_timestamp,
        training_run_id=registry.run_id, code_revision="3f2a9c1e",
        training_data="features_2026_11@a1b2c3d4 (s3://features/2026-11)",
        reference_profile_id="p-1", parameters={"learning_rate": "0.1", "max_depth": "8"},
        training_metrics={"auc": 0.94, "loss": 0.2}, description="first")
    assert records[f"version:{fraud}/2".encode()] == ModelVersion(
        fraud, "2", created_at_ms=v[fraud, "2"].creation_timestamp)
    assert records[f"version:{churn}/1".encode()].training_metrics == {"recall": 0.7}
    deployed = sorted((r.model, r.version, r.event, r.environment, r.at_ms)
                      for r in records.values() if isinstance(r, Deployment))
    assert deployed == sorted([
        (fraud, "1", "deployed", "champion, production", v[fraud, "1"].last_updated_timestamp),
        (fraud, "2", "deployed", "challenger", v[fraud, "2"].last_updated_timestamp),
        (fraud, "3", "retired", "", v[fraud, "3"].last_updated_timestamp),
        (churn, "1", "deployed", "prod", v[churn, "1"].last_updated_timestamp)])

    again = await import_mlflow(settings, mlflow_server.url)
    assert again == report
    both = await read_topic(settings, 16)
    assert both[:8] == first and sorted(both[8:]) == sorted(first)  # compaction keeps one

    async with RegistryStore(settings) as store:  # what every worker follows
        async with asyncio.timeout(30):
            await store.wait_ready()
        assert len(store) == 8 and store.registered(fraud, "4") is False
        assert store.describe(fraud, "1").startswith("deployed to champion, production ")
        assert f"trained on features_2026_11@a1b2c3d4 (s3://features/2026-11) (run " \
               f"{registry.run_id})" in store.describe(fraud, "1")


async def test_named_models_only_and_a_missing_one_is_reported(
        settings: Settings, mlflow_server: Server, registry: Registry) -> None:
    # The URL as a browser shows the UI works too.
    report = await import_mlflow(settings, f"{mlflow_server.url}/#/models",
                                 models=[registry.churn, "no-such-model"])
    assert (report.models, report.versions, report.deployments) == (1, 1, 1)
    assert report.skipped == [Skipped("no-such-model", "", "no registered model of that name "
                                                           f"at {mlflow_server.url}")]
    keys = {key for key, _ in await read_topic(settings, 2)}
    assert keys == {f"version:{registry.churn}/1".encode(),
                    f"deployment:{registry.churn}/1/"
                    f"{registry.versions[registry.churn, '1'].last_updated_timestamp}/"
                    f"deployed".encode()}


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that wants ``Authorization: Bearer s3cret``, as a proxy in front of MLflow
    would: 401 without a token, 403 with another; the headers it was sent."""
    seen: list[str] = []

    async def search(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        seen.append(given)
        if not given:
            return web.json_response({"error_code": "UNAUTHENTICATED"}, status=401)
        if given != "Bearer s3cret":
            return web.json_response({"error_code": "PERMISSION_DENIED"}, status=403)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/2.0/mlflow/registered-models/search", search)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_server_that_cannot_be_used_says_what_to_do_in_one_line(
        mlflow_server: Server, guarded: tuple[str, list[str]]) -> None:
    settings = Settings()  # nothing is published: Kafka is never reached
    closed = f"http://127.0.0.1:{free_port()}"
    guarded_url, seen = guarded
    for url, token, message in [
        (closed, None, f"cannot reach the MLflow tracking server at {closed} "),
        (f"{mlflow_server.url}/not-mlflow", None,
         f"{mlflow_server.url}/not-mlflow is not an MLflow tracking server "
         r"\(/api/2.0/mlflow/registered-models/search answered 404\): pass the tracking "
         "server's base URL"),
        (guarded_url, None, "needs credentials \\(HTTP 401\\): pass an access token "
                            "\\(--token, or MLFLOW_TRACKING_TOKEN"),
        (guarded_url, "wrong", "refused the token \\(HTTP 403\\)"),
        ("mlflow.internal:5000", None, "is not an http\\(s\\) URL"),
    ]:
        with pytest.raises(MlflowImportError, match=message) as failed:
            await import_mlflow(settings, url, token=token)
        assert "\n" not in str(failed.value)
    report = await import_mlflow(settings, guarded_url, token="s3cret")
    assert (report.models, report.versions) == (0, 0)
    assert seen == ["", "Bearer wrong", "Bearer s3cret"]
