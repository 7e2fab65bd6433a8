"""The aiohttp application: GET routes only, pages and their JSON, static files.

Nothing on it can write: a method other than GET or HEAD is answered 405 before any
handler runs, and the reader's queries run read-only (see
:mod:`driftline.streams.ui.reader`). It binds to 127.0.0.1 unless told otherwise.

Routes: ``/`` the fleet, ``/model/<model>`` (``?version=``, ``?feature=``, ``?window=``
epoch ms), ``/alerts``; their JSON under ``/api/`` (``fleet``, ``drift``, ``histogram``,
``quality``, ``service``, ``alerts``; ``?model=&version=``); ``/static/<file>``, Plotly.js
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import orjson
from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from driftline.streams.settings import Settings
from driftline.streams.ui import pages, shaping
from driftline.streams.ui.queries import valid_name
from driftline.streams.ui.reader import Reader

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "UiServer", "build_app", "offer_after_demo",
           "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
READ_METHODS = frozenset({"GET", "HEAD"})

_READER = web.AppKey("reader", Reader)
_STATIC = web.AppKey("static", dict[str, Path])
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Plotly sets styles inline (style attributes and a <style> element of its own).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Refused(Exception):
    """A request the UI answers with ``status`` and one line, as a page or as JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def build_app(settings: Settings, reader: Reader | None = None) -> web.Application:
    """The UI over the ClickHouse of ``settings``; its client opens when the app starts
    (``reader``: another, for tests)."""
    app = web.Application(middlewares=[_read_only, _refusals])
    app[_STATIC] = _static_files()
    app.cleanup_ctx.append(_reader(reader or Reader(settings)))
    app.on_response_prepare.append(_add_headers)
    for path, handler in (("/", _fleet_page), ("/model/{model:[\\s\\S]+}", _model_page),
                          ("/alerts", _alerts_page), ("/api/fleet", _fleet_json),
                          ("/api/drift", _drift_json), ("/api/histogram", _histogram_json),
                          ("/api/quality", _quality_json), ("/api/service", _service_json),
                          ("/api/alerts", _alerts_json), ("/static/{name}", _static)):
        app.router.add_get(path, handler)
    return app


def _reader(reader: Reader) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        await reader.start()
        app[_READER] = reader
        try:
            yield
        finally:
            await reader.close()

    return context


def _static_files() -> dict[str, Path]:
    own = importlib.resources.files("driftline.streams.ui") / "static"
    files = {entry.name: Path(str(entry)) for entry in own.iterdir() if entry.is_file()}
    # Plotly.js as the plotly wheel ships it: no CDN, no Node build.
    files["plotly.min.js"] = Path(str(importlib.resources.files("plotly") / "package_data"
                                      / "plotly.min.js"))
    return files


@web.middleware
async def _read_only(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if request.method not in READ_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS))
    return await handler(request)


@web.middleware
async def _refusals(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _Refused as refused:
        return _refusal(request, refused.status, str(refused))
    except ClickHouseError as error:
        message = " ".join(str(error).split())[:300]
        return _refusal(request, 503, f"ClickHouse did not answer: {message}")


def _refusal(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return _json({"error": message}, status)
    database = request.app[_READER].database
    return web.Response(text=pages.not_found(message, database), status=status,
                        content_type="text/html")


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)


def _json(data: Any, status: int = 200) -> web.Response:
    # orjson writes NaN as null: JSON has no NaN, and the browser's parser would refuse it.
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


# -- what a request names -----------------------------------------------------------


async def _model_version(request: web.Request) -> tuple[str, str, list[str]]:
    """The model and version a request names (the newest version if it names none), and
    the model's versions, newest first; refused 404 unless the tables hold them."""
    reader = request.app[_READER]
    model = request.match_info.get("model") or request.query.get("model", "")
    if not valid_name(model):
        raise _Refused(404, "no such model")
    rows = await reader.versions(model)
    if not rows:
        raise _Refused(404, f"no model {model!r} in this database")
    names = shaping.newest_first(rows)
    version = request.query.get("version") or names[0]
    if version not in names:
        raise _Refused(404, f"{model} has no version {version!r}")
    return model, version, names


def _window(request: web.Request) -> int | None:
    text = request.query.get("window")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise _Refused(400, "window is the window's start in epoch milliseconds") from None


async def _feature(request: web.Request, model: str, version: str,
                   features: list[str] | None = None) -> str | None:
    feature = request.query.get("feature")
    if not feature:
        return None
    if features is None:
        features = await request.app[_READER].features(model, version)
    if feature not in features:
        raise _Refused(404, f"{model} {version} has no feature {feature!r}")
    return feature


# -- pages ------------------------------------------------------------------------


async def _fleet_page(request: web.Request) -> web.Response:
    reader = request.app[_READER]
    return _html(pages.fleet_page(await reader.fleet(), reader.database))


async def _model_page(request: web.Request) -> web.Response:
    reader = request.app[_READER]
    model, version, versions = await _model_version(request)
    features, incidents = await asyncio.gather(reader.features(model, version),
                                               reader.alerts(model, version))
    feature = await _feature(request, model, version, features)
    return _html(pages.model_page(model, version, versions, features, incidents,
                                  reader.database, feature=feature, window_ms=_window(request)))


async def _alerts_page(request: web.Request) -> web.Response:
    reader = request.app[_READER]
    return _html(pages.alerts_page(await reader.alerts(), reader.database))


# -- JSON ---------------------------------------------------------------------------


async def _fleet_json(request: web.Request) -> web.Response:
    return _json(await request.app[_READER].fleet())


async def _drift_json(request: web.Request) -> web.Response:
    model, version, _ = await _model_version(request)
    return _json(await request.app[_READER].drift(model, version))


async def _histogram_json(request: web.Request) -> web.Response:
    reader = request.app[_READER]
    model, version, _ = await _model_version(request)
    features = await reader.features(model, version)
    feature = await _feature(request, model, version, features)
    if feature is None:  # the most drifted, else the first
        worst = (await reader.drift(model, version))["worst"]
        feature = worst["feature"] if worst else next(iter(features), None)
    if feature is None:
        return _json({"feature": None, "labels": [], "note": "no data yet"})
    shape = await reader.histogram(model, version, feature, _window(request))
    if shape is None:
        raise _Refused(404, f"{feature} of {model} {version} has no such window")
    return _json(shape)


async def _quality_json(request: web.Request) -> web.Response:
    model, version, _ = await _model_version(request)
    return _json(await request.app[_READER].quality(model, version))


async def _service_json(request: web.Request) -> web.Response:
    model, version, _ = await _model_version(request)
    return _json(await request.app[_READER].service(model, version))


async def _alerts_json(request: web.Request) -> web.Response:
    reader = request.app[_READER]
    if "model" not in request.query:
        return _json(await reader.alerts())
    model, version, _ = await _model_version(request)
    return _json(await reader.alerts(model, version))


async def _static(request: web.Request) -> web.StreamResponse:
    path = request.app[_STATIC].get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})


# -- serving ------------------------------------------------------------------------


class UiServer:
    """The UI on ``host:port`` (port 0: a free one), started and stopped with ``async with``."""

    def __init__(self, settings: Settings, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, reader: Reader | None = None) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        self._reader = reader
        self._runner: web.AppRunner | None = None

    async def start(self) -> Self:
        runner = web.AppRunner(build_app(self.settings, self._reader), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs it listens on."""
        if self._runner is None:
            return []
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    @property
    def url(self) -> str:
        host, port = self.addresses[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the UI until Ctrl-C or SIGTERM; ``on_ready`` gets its URL once it listens.

    Raises :class:`RuntimeError` (one line) when ClickHouse cannot be used, and
    :class:`OSError` when the address is taken.
    """
    try:
        asyncio.run(_serve_until_stopped(settings, host, port, on_ready))
    except ClickHouseError as error:
        raise RuntimeError(str(error)) from None


async def _serve_until_stopped(settings: Settings, host: str, port: int,
                               on_ready: Callable[[str], None] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    async with UiServer(settings, host, port) as server:
        if on_ready is not None:
            on_ready(server.url)
        await stop.wait()


def offer_after_demo(settings: Settings, console: Console, host: str = DEFAULT_HOST,
                     port: int = DEFAULT_PORT) -> None:
    """At the end of ``driftline demo``: in a terminal, serve the UI over its results until
    Ctrl-C; elsewhere (a pipe, CI) say how to see them later instead of waiting."""
    later = (f"http://{host}:{port}/ once `driftline embedded --home HOME` (the demo's "
             "home) and, beside it, `driftline ui` serve them")
    if not console.is_terminal:
        console.print(f"\nThe results as a web page: {later}.", highlight=False)
        return

    def ready(url: str) -> None:
        console.print(f"\n[bold]The results as a web page[/]: {url} (read-only; Ctrl-C "
                      "stops it and the embedded stack)", highlight=False)

    try:
        serve(settings, host, port, on_ready=ready)
    except ModuleNotFoundError as error:
        console.print(f"[yellow]the web page needs the 'ui' extra (no module named "
                      f"{error.name!r}): pip install 'driftline[ui]'[/]", highlight=False)
    except (OSError, RuntimeError) as error:  # the port is taken, or ClickHouse gone
        console.print(f"[yellow]the web page could not start on {host}:{port} ({error}); "
                      f"{later}[/]", highlight=False)
