"""The UI's ClickHouse client: each page's queries, read-only, shaped for the page.

A table that does not exist yet (no worker has created the schema) reads as empty, so a
fresh database shows "no data yet" instead of an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

from driftline.sinks.clickhouse_options import clickhouse_client_options, connect_error
from driftline.streams.settings import Settings
from driftline.streams.ui import queries, shaping
from driftline.streams.ui.queries import Query

__all__ = ["Reader"]

Json = dict[str, Any]
_UNKNOWN_TABLE, _UNKNOWN_DATABASE = 60, 81
#: ClickHouse refuses every write, DDL included, under ``readonly = 2`` (1 would also
#: refuse the settings the client sends with a query).
_READ_ONLY = {"readonly": 2, "max_execution_time": 30}


class Reader:
    """Runs the UI's queries on one async client: ``await start()`` ... ``await close()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self._client: AsyncClient | None = None
        self._query_settings: dict[str, Any] = {}

    async def start(self) -> None:
        try:
            client = await clickhouse_connect.get_async_client(
                **clickhouse_client_options(self.settings))
            # A user that is read-only already may not change the setting at all.
            (level,), = (await client.query("SELECT getSetting('readonly')")).result_rows
        except ClickHouseError as error:
            raise connect_error(error, self.settings) from None
        self._client = client
        self._query_settings = _READ_ONLY if int(level) == 0 else {}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def rows(self, query: Query) -> Sequence[Sequence[Any]]:
        """The query's rows; none when its table or database does not exist yet."""
        if self._client is None:
            raise RuntimeError("Reader is not started: call await reader.start() first")
        try:
            result = await self._client.query(query.sql, parameters=dict(query.parameters),
                                              settings=self._query_settings)
        except DatabaseError as error:
            if getattr(error, "code", None) in (_UNKNOWN_TABLE, _UNKNOWN_DATABASE):
                return []
            raise
        return result.result_rows

    async def scalar(self, query: Query, default: int = 0) -> int:
        rows = await self.rows(query)
        return int(rows[0][0] or default) if rows else default

    # -- what the pages ask -----------------------------------------------------------

    async def fleet(self) -> Json:
        db = self.database
        windows, drift, incidents, end = await asyncio.gather(
            self.rows(queries.fleet_windows(db)), self.rows(queries.fleet_drift(db)),
            self.rows(queries.open_incidents(db)), self.scalar(queries.data_end(db)))
        return shaping.fleet(windows, drift, incidents, end)

    async def versions(self, model: str) -> list[tuple[str, int, int, int]]:
        """The model's versions: (version, first window ms, last window ms, windows)."""
        rows = await self.rows(queries.versions(self.database, model))
        return [(str(v), int(first), int(last), int(n)) for v, first, last, n in rows]

    async def features(self, model: str, version: str) -> list[str]:
        rows = await self.rows(queries.features(self.database, model, version))
        return [str(feature) for feature, in rows]

    async def drift(self, model: str, version: str) -> Json:
        since = await self._since(model, version)
        return shaping.heatmap(await self.rows(queries.drift(self.database, model, version,
                                                             since)))

    async def histogram(self, model: str, version: str, feature: str,
                        window_ms: int | None) -> Json | None:
        """The feature's window (``window_ms``, else its most drifted, else its latest)
        against the reference; None when the feature has no such window."""
        db = self.database
        since = await self._since(model, version)
        scored = await self.rows(queries.feature_windows(db, model, version, feature, since))
        chosen = shaping.pick_window([(int(ms), psi) for ms, psi in scored], window_ms)
        if chosen is None:
            return None
        window, reference = await asyncio.gather(
            self.rows(queries.feature_window(db, model, version, feature, chosen)),
            self.rows(queries.reference_feature(db, model, version, feature)))
        psi = next((p for ms, p in scored if ms == chosen), None)
        return shaping.histogram(feature, chosen, window[0] if window else None,
                                 reference[0] if reference else None, psi)

    async def quality(self, model: str, version: str) -> Json:
        since = await self._since(model, version)
        return shaping.quality(await self.rows(queries.quality(self.database, model, version,
                                                               since)))

    async def service(self, model: str, version: str) -> Json:
        db = self.database
        since = await self._since(model, version)
        service_rows, gpu_rows = await asyncio.gather(
            self.rows(queries.service(db, model, version, since)),
            self.rows(queries.gpus(db, model, since)))
        return shaping.service(service_rows, gpu_rows)

    async def alerts(self, model: str | None = None, version: str = "") -> Json:
        """Every incident, or those of one model version and the GPU hosts that served it."""
        db = self.database
        if model is None:
            query = queries.alerts(db)
        else:
            hosts = [str(host) for host, in await self.rows(queries.gpu_hosts(db, model))]
            query = queries.model_alerts(db, model, version, hosts)
        rows, end = await asyncio.gather(self.rows(query), self.scalar(queries.data_end(db)))
        return shaping.incidents(rows, end)

    async def _since(self, model: str, version: str) -> int:
        return await self.scalar(queries.span_start(self.database, model, version))
