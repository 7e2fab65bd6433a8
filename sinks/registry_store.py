"""The model registry mirrored into ClickHouse: ``model_versions`` and ``deployments``.

Every worker reads the whole registry topic and writes what it read; rows replace by key,
so many workers (and restarts) writing the same records leave one row each.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.registry.records import Deployment, ModelVersion
from driftline.sinks.write_version import write_versions

_VERSION_COLUMNS = ["model", "model_version", "created_at", "training_run_id", "code_revision",
                    "training_data", "reference_profile_id", "parameters", "training_metrics",
                    "description", "revision"]
_DEPLOYMENT_COLUMNS = ["model", "model_version", "at", "event", "traffic_share", "environment",
                       "note", "revision"]


async def write_registry(client: AsyncClient, database: str,
                         records: Sequence[ModelVersion | Deployment]) -> None:
    versions = [r for r in records if isinstance(r, ModelVersion)]
    deployments = [r for r in records if isinstance(r, Deployment)]
    if versions:
        await client.insert("model_versions", [
            (v.model, v.version, v.created_at_ms, v.training_run_id, v.code_revision,
             v.training_data, v.reference_profile_id, dict(v.parameters),
             dict(v.training_metrics), v.description, revision)
            for v, revision in zip(versions, write_versions(len(versions)), strict=True)],
            column_names=_VERSION_COLUMNS, database=database)
    if deployments:
        await client.insert("deployments", [
            (d.model, d.version, d.at_ms, d.event, d.traffic_share, d.environment, d.note,
             revision)
            for d, revision in zip(deployments, write_versions(len(deployments)), strict=True)],
            column_names=_DEPLOYMENT_COLUMNS, database=database)
