"""Import an MLflow Model Registry into the registry topic, through MLflow's REST API.

:func:`import_mlflow` pages through ``registered-models/search`` (or gets the models it is
named), then each model's ``model-versions/search``, fetches each version's run once
(``runs/get``), maps them with :mod:`driftline.models.registry.mlflow` and publishes the
records with :func:`~driftline.streams.registry.registry.publish_records`. Importing again
publishes the same records under the same keys, so it can run on a schedule.

Only aiohttp (the worker extra) is needed, not the ``mlflow`` package. A version the
records refuse is left out and listed in the report; a server that cannot be used raises
:class:`MlflowImportError`, whose one line says what happened and what to do.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import orjson
import yarl

from driftline.models.registry import mlflow as mlflow_records
from driftline.models.registry.records import Deployment, ModelVersion, RecordError
from driftline.streams.registry.registry import publish_records
from driftline.streams.settings import Settings

__all__ = ["ImportReport", "MlflowImportError", "Skipped", "import_mlflow"]

_API = "/api/2.0/mlflow"
#: Runs fetched at once.
_CONCURRENT_RUNS = 8


class MlflowImportError(RuntimeError):
    """The MLflow server could not be read; the text says why and what to do, in one line."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A version (or, with ``version`` "", a whole model) left out, and why."""

    model: str
    version: str
    reason: str

    def __str__(self) -> str:
        return f"{self.model} {self.version}: {self.reason}" if self.version \
            else f"{self.model}: {self.reason}"


@dataclasses.dataclass
class ImportReport:
    """What one import read and published."""

    url: str
    models: int = 0
    versions: int = 0
    deployments: int = 0
    skipped: list[Skipped] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        line = (f"imported {self.models} models, {self.versions} versions and "
                f"{self.deployments} deployments from {self.url}")
        return f"{line}; skipped {len(self.skipped)}" if self.skipped else line


async def import_mlflow(settings: Settings, url: str, models: Sequence[str] | None = None,
                        token: str | None = None, *, page_size: int = 100,
                        timeout_s: float = 30.0) -> ImportReport:
    """Publish the model versions and deployments of the MLflow tracking server at ``url``
    (every registered model, or only ``models``) to ``settings.registry_topic``.

    ``token`` is sent as ``Authorization: Bearer``; ``page_size`` is the ``max_results`` of
    each search request, ``timeout_s`` the limit on each request.
    """
    base = _base_url(url)
    report = ImportReport(url=base)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        api = _Api(session, base, bool(token), timeout_s)
        found: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        for model in await _registered_models(api, models, page_size, report):
            versions = await _versions(api, model["name"], page_size, report)
            if versions is not None:
                found.append((model, versions))
        runs = await _runs(api, sorted({v["run_id"] for _, versions in found for v in versions
                                        if isinstance(v.get("run_id"), str) and v["run_id"]}))
    records: list[ModelVersion | Deployment] = []
    for model, versions in found:
        report.models += 1
        aliases = mlflow_records.aliases_by_version(model)
        for version in versions:
            number = str(version.get("version", ""))
            if version.get("status") == "FAILED_REGISTRATION":
                report.skipped.append(Skipped(model["name"], number,
                                              "its registration failed in MLflow"))
                continue
            try:
                mapped = mlflow_records.version_records(
                    version, runs.get(str(version.get("run_id"))), aliases.get(number, []))
            except RecordError as exc:
                report.skipped.append(Skipped(model["name"], number, str(exc)))
                continue
            records += mapped
            report.versions += 1
            report.deployments += len(mapped) - 1
    await publish_records(settings, records)
    return report


def _base_url(url: str) -> str:
    """The server's base URL, without what a browser adds (a query, the UI's ``#/...``)."""
    try:
        parsed = yarl.URL(url.strip())
    except ValueError:
        parsed = yarl.URL()
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise MlflowImportError(f"{url!r:.100} is not an http(s) URL: pass the MLflow tracking "
                                "server's base URL, e.g. http://mlflow.internal:5000")
    return str(parsed.with_query(None).with_fragment(None)).rstrip("/")


class _Api:
    """GET requests to the REST API, their failures as one-line errors."""

    def __init__(self, session: aiohttp.ClientSession, base: str, has_token: bool,
                 timeout_s: float) -> None:
        self.session = session
        self.base = base
        self.has_token = has_token
        self.timeout_s = timeout_s

    async def get(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any] | None:
        """The response document; None when MLflow says the resource does not exist."""
        path = f"{_API}/{endpoint}"
        try:
            async with self.session.get(self.base + path, params=params) as response:
                status, body = response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise MlflowImportError(
                f"cannot reach the MLflow tracking server at {self.base} "
                f"({_one_line(str(exc.os_error or exc))}): check the URL and that the server "
                "is running") from None
        except TimeoutError:
            raise MlflowImportError(
                f"the MLflow tracking server at {self.base} did not answer {path} within "
                f"{self.timeout_s:g} s: check that it is healthy, or try again") from None
        except aiohttp.ClientError as exc:
            raise MlflowImportError(
                f"reading {path} from {self.base} failed ({_one_line(str(exc))}): check the "
                "URL and that the server is an MLflow tracking server") from None
        doc = _json(body)
        if status == 200:
            if doc is None:
                raise MlflowImportError(self._not_mlflow(path, "answered with something "
                                                               "other than JSON"))
            return doc
        if status in (401, 403):
            if self.has_token:
                raise MlflowImportError(
                    f"the MLflow server at {self.base} refused the token (HTTP {status}): "
                    "check that it is valid and may read the model registry")
            raise MlflowImportError(
                f"the MLflow server at {self.base} needs credentials (HTTP {status}): pass an "
                "access token (--token, or MLFLOW_TRACKING_TOKEN)")
        if status == 404:
            if doc is not None and doc.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise MlflowImportError(self._not_mlflow(path, "answered 404"))
        message = _one_line(str(doc.get("message", "")) if doc is not None
                            else body.decode("utf-8", "replace"))
        raise MlflowImportError(f"the MLflow server at {self.base} answered HTTP {status} to "
                                f"{path}: {message:.200}")

    def _not_mlflow(self, path: str, what: str) -> str:
        return (f"{self.base} is not an MLflow tracking server ({path} {what}): pass the "
                "tracking server's base URL, e.g. http://mlflow.internal:5000")


async def _runs(api: _Api, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each run's document (``runs/get``'s ``run``), a few requests at a time; a run that
    is gone is left out. The first failure cancels the requests still going."""
    slots = asyncio.Semaphore(_CONCURRENT_RUNS)

    async def fetch(run_id: str) -> dict[str, Any] | None:
        async with slots:
            doc = await api.get("runs/get", {"run_id": run_id})
        run = doc.get("run") if doc is not None else None
        return run if isinstance(run, dict) else None

    tasks = [asyncio.ensure_future(fetch(run_id)) for run_id in run_ids]
    try:
        fetched = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return {run_id: run for run_id, run in zip(run_ids, fetched, strict=True) if run is not None}


async def _registered_models(api: _Api, names: Sequence[str] | None, page_size: int,
                             report: ImportReport) -> list[dict[str, Any]]:
    """Every registered model (paged), or those named, in the order given."""
    if names is not None:
        found = []
        for name in dict.fromkeys(names):
            doc = await api.get("registered-models/get", {"name": name})
            model = doc.get("registered_model") if doc is not None else None
            if isinstance(model, dict) and isinstance(model.get("name"), str):
                found.append(model)
            else:
                report.skipped.append(Skipped(name, "", f"no registered model of that name "
                                                        f"at {api.base}"))
        return found
    return [m for m in await _pages(api, "registered-models/search", "registered_models",
                                    {}, page_size) if isinstance(m.get("name"), str)]


async def _versions(api: _Api, model: str, page_size: int,
                    report: ImportReport) -> list[dict[str, Any]] | None:
    """The model's versions, oldest first; None (and a reason in the report) when its name
    cannot be put in a search filter."""
    quote = next((q for q in "'\"" if q not in model), None)
    if quote is None:
        report.skipped.append(Skipped(model, "", "its name has both kinds of quotes, which "
                                                 "an MLflow search filter cannot hold"))
        return None
    found = await _pages(api, "model-versions/search", "model_versions",
                         {"filter": f"name={quote}{model}{quote}"}, page_size)
    # A search filter may match more loosely than equality on some servers.
    found = [v for v in found if v.get("name") == model]
    return sorted(found, key=lambda v: _version_order(v.get("version")))


async def _pages(api: _Api, endpoint: str, field: str, params: Mapping[str, str],
                 page_size: int) -> list[dict[str, Any]]:
    """Every item of a paged search, following ``next_page_token``."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        query = {**params, "max_results": str(page_size)}
        if token:
            query["page_token"] = token
        doc = await api.get(endpoint, query) or {}
        page = doc.get(field)
        items += [i for i in page if isinstance(i, dict)] if isinstance(page, list) else []
        token = str(doc.get("next_page_token") or "")
        if not token:
            return items


def _version_order(version: Any) -> tuple[int, int, str]:
    text = str(version)
    return (0, int(text), text) if text.isdigit() else (1, 0, text)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())
