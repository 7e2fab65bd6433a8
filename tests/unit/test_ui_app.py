"""The web UI's application without ClickHouse: a reader whose queries return canned rows.

Nothing can write (every method but GET and HEAD is 405, on every path), names from URLs
are checked against what the tables hold, static files come from the package and from
the plotly wheel, and the server listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import inspect
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from rich.console import Console

from driftline.streams.settings import Settings
from driftline.streams.ui import (
    DEFAULT_HOST,
    UiServer,
    build_app,
    offer_after_demo,
    queries,
    serve,
)
from driftline.streams.ui.queries import Query
from driftline.streams.ui.reader import Reader

T0 = 1_764_230_400_000
MINUTE = 60_000
METHODS = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class CannedReader(Reader):
    """A reader that answers each query about model ``m`` (or no model) from ``rows``,
    keyed by the query's SQL (which does not depend on its parameters), and each other
    query with no rows."""

    def __init__(self, rows: Mapping[str, Sequence[Sequence[Any]]] | None = None) -> None:
        super().__init__(Settings())
        self.canned = dict(rows or {})
        self.asked: list[Query] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def rows(self, query: Query) -> Sequence[Sequence[Any]]:
        self.asked.append(query)
        if query.parameters.get("model", "m") != "m":
            return []
        return self.canned.get(query.sql, [])


def one_model() -> dict[str, Sequence[Sequence[Any]]]:
    return {
        queries.versions("d", "m").sql: [("v1", T0, T0 + MINUTE, 2), ("v2", T0, T0, 1)],
        queries.features("d", "m", "v").sql: [("amount",), ("country",)],
        queries.drift("d", "m", "v", 0).sql: [("amount", T0, 1.62, "critical")],
        queries.feature_windows("d", "m", "v", "f", 0).sql: [(T0, 1.62)],
        queries.feature_window("d", "m", "v", "f", 0).sql: [
            ("numeric", T0 + MINUTE, 10, 0, [1.0], [4, 6], [], [], 0)],
    }


@pytest.fixture
async def empty() -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(Settings(), CannedReader()))) as client:
        yield client


@pytest.fixture
async def filled() -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(Settings(), CannedReader(one_model()))
    async with TestClient(TestServer(app)) as client:
        yield client


PATHS = ["/", "/alerts", "/model/m", "/api/fleet", "/api/drift?model=m",
         "/api/histogram?model=m", "/api/quality?model=m", "/api/service?model=m",
         "/api/alerts", "/static/ui.js", "/static/plotly.min.js", "/no/such/path"]


def test_every_route_is_get_or_head_only() -> None:
    app = build_app(Settings(), CannedReader())
    methods = {route.method for route in app.router.routes()}
    assert methods == {"GET", "HEAD"}


@pytest.mark.parametrize("method", METHODS)
async def test_nothing_can_write(filled: TestClient[Any, Any], method: str) -> None:
    for path in PATHS:
        response = await filled.request(method, path, data=b"x=1")
        assert response.status == 405, (method, path)
        assert response.headers["Allow"] == "GET,HEAD"


async def test_an_empty_database_shows_no_data_yet(empty: TestClient[Any, Any]) -> None:
    fleet = await empty.get("/")
    assert fleet.status == 200 and "No data yet" in await fleet.text()
    alerts = await empty.get("/alerts")
    assert alerts.status == 200 and "No alerts yet." in await alerts.text()
    assert await (await empty.get("/api/fleet")).json() == {
        "data_end": None, "models": [], "other_open": 0}
    assert await (await empty.get("/api/alerts")).json() == {"now": None, "incidents": []}


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/model/nope", 404, "no model 'nope' in this database"),
    ("/model/m?version=v9", 404, "m has no version 'v9'"),
    ("/model/m?feature=nope", 404, "m v2 has no feature 'nope'"),
    ("/model/m?window=soon", 400, "window is the window's start in epoch milliseconds"),
    ("/model/bad%0Aname", 404, "no such model"),
    ("/model/team%2Ffraud", 404, "no model 'team/fraud' in this database"),  # a slash: routed
])
async def test_names_in_urls_are_checked_against_the_tables(
        filled: TestClient[Any, Any], path: str, status: int, message: str) -> None:
    response = await filled.get(path)
    assert response.status == status
    assert message.replace("'", "&#x27;") in await response.text()
    api = path.replace("/model/", "/api/drift?model=").replace("?version", "&version")
    if "?" in api and "feature" not in api and "window" not in api:
        response = await filled.get(api)
        assert response.status == status
        assert await response.json() == {"error": message}


async def test_the_model_page_defaults_to_the_newest_version(
        filled: TestClient[Any, Any]) -> None:
    response = await filled.get("/model/m")
    html = await response.text()
    assert response.status == 200
    # v1 and v2 started together; v2 is the higher name.
    assert "<h1>m <small>version v2</small></h1>" in html
    assert '<a href="/model/m?version=v1">v1</a>' in html


async def test_the_histogram_defaults_to_the_most_drifted_feature(
        filled: TestClient[Any, Any]) -> None:
    shape = await (await filled.get("/api/histogram?model=m&version=v1")).json()
    assert shape["feature"] == "amount" and shape["window_ms"] == T0
    assert shape["labels"] == ["< 1", "≥ 1"] and shape["window_shares"] == [0.4, 0.6]
    missing = await filled.get(f"/api/histogram?model=m&feature=amount&window={T0 + 1}")
    assert missing.status == 404


async def test_static_files_come_from_the_package_and_the_plotly_wheel(
        empty: TestClient[Any, Any]) -> None:
    own = await empty.get("/static/ui.js")
    assert own.status == 200 and "javascript" in own.headers["Content-Type"]
    assert "DRAWERS" in await own.text()
    css = await empty.get("/static/ui.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    plotly = await empty.get("/static/plotly.min.js")
    assert plotly.status == 200 and b"* plotly.js v" in (await plotly.read())[:100]
    for path in ("/static/nope.js", "/static/..%2Fserver.py", "/static/"):
        assert (await empty.get(path)).status == 404, path


async def test_every_response_forbids_what_a_read_only_page_never_needs(
        empty: TestClient[Any, Any]) -> None:
    for path in ("/", "/api/fleet", "/static/ui.js", "/model/nope"):
        headers = (await empty.get(path)).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "form-action 'none'" in policy, path
        assert headers["X-Content-Type-Options"] == "nosniff"


async def test_json_has_no_nan(filled: TestClient[Any, Any]) -> None:
    reader = CannedReader({queries.versions("d", "m").sql: [("v1", T0, T0, 1)],
                           queries.quality("d", "m", "v", 0).sql: [
                               (T0, float("nan"), 0.5, float("inf"), 1, 2)]})
    async with TestClient(TestServer(build_app(Settings(), reader))) as client:
        body = await (await client.get("/api/quality?model=m")).read()
    assert orjson.loads(body)["accuracy"] == [None] and b"NaN" not in body


async def test_the_server_listens_on_127_0_0_1_by_default() -> None:
    assert DEFAULT_HOST == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(UiServer).parameters["host"].default == "127.0.0.1"
    async with UiServer(Settings(), port=0, reader=CannedReader()) as server:
        [(host, port)] = server.addresses
        assert host == "127.0.0.1" and port > 0
        assert server.url == f"http://127.0.0.1:{port}/"
        async with ClientSession() as session, session.get(server.url) as response:
            assert response.status == 200


def test_serving_without_clickhouse_is_one_line() -> None:
    nothing = Settings(clickhouse_url="http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match=r"^cannot use ClickHouse at http://127\.0\.0\.1:9 "):
        serve(nothing, port=0)


def test_the_demo_offers_the_page_only_in_a_terminal() -> None:
    piped = Console(file=io.StringIO(), force_terminal=False, width=200)
    offer_after_demo(Settings(clickhouse_url="http://127.0.0.1:9"), piped)
    said = piped.file.getvalue()
    assert "http://127.0.0.1:8765/ once" in said and "`driftline ui` serve them" in said
    terminal = Console(file=io.StringIO(), force_terminal=True, width=200)
    offer_after_demo(Settings(clickhouse_url="http://127.0.0.1:9"), terminal, port=0)
    said = terminal.file.getvalue()
    assert "could not start on 127.0.0.1:0 (cannot use ClickHouse at" in said
