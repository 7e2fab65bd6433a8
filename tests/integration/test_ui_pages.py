"""The web UI in a real browser: headless Chromium loads each page, served in-process from
the embedded ClickHouse filled with the demo's traffic by a real worker, and the tests
check what a person would: every model version in the fleet, the drifting feature marked
on fraud-detector v2's heatmap, its histogram against the reference, the churn model's
service next to its hot GPUs, and the quality and latency incidents on the alert timeline
with their evidence. Screenshots are saved; with ``DRIFTLINE_UPDATE_SCREENSHOTS=1`` the
model page's replaces ``tests/integration/screenshots/ui-model-page.png`` (the README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import clickhouse_connect
import orjson
import pytest
from aiohttp import ClientSession
from clickhouse_connect.driver.client import Client
from demo_data import HOP, LATENCY, PLAN, QUALITY, T0

from driftline.streams.demo.traffic import MODELS
from driftline.streams.settings import Settings
from driftline.streams.ui import UiServer, queries
from driftline.streams.ui.queries import Query
from driftline.streams.ui.reader import Reader

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--virtual-time-budget=15000", "--window-size=1400,2000",
                  # The page's console on stderr: a script error or a refused resource
                  # (the Content-Security-Policy) shows there.
                  "--enable-logging=stderr", "--v=0")


# -- the stack, filled once (demo_data.py, shared with the Grafana panels' test) --------


@pytest.fixture(scope="module")
def filled(demo_data: Settings) -> Settings:
    return demo_data


@pytest.fixture(scope="module")
def settings(demo_data: Settings) -> Settings:
    return demo_data


@pytest.fixture(scope="module")
def clickhouse(demo_data: Settings) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=demo_data.clickhouse_url)
    yield client
    client.close()


# -- the UI, served in-process --------------------------------------------------------


class ServedUi:
    """The UI on a free 127.0.0.1 port, its event loop in a thread of its own (the tests
    wait on Chromium meanwhile)."""

    def __init__(self, settings: Settings, reader: Reader | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        # The default host: 127.0.0.1.
        self.server = UiServer(settings, port=0, reader=reader)

    def __enter__(self) -> ServedUi:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


@pytest.fixture(scope="module")
def ui(filled: Settings) -> Iterator[ServedUi]:
    with ServedUi(filled) as served:
        yield served


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-screenshots")


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Element] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        """Its text and its descendants', whitespace collapsed."""
        return " ".join("".join(self.parts).split())

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants with ``tag`` whose attributes have these values (``class_`` for
        class, matched as one of its words; ``data_x`` for ``data-x``)."""
        found = []
        for element in self.iter():
            if tag is not None and element.tag != tag:
                continue
            if all(_attr_matches(element, name, value) for name, value in attrs.items()):
                found.append(element)
        return found

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        [element] = self.find_all(tag, **attrs)
        return element


def _attr_matches(element: Element, name: str, value: str) -> bool:
    if name == "class_":
        return value in element.attrs.get("class", "").split()
    return element.attrs.get(name.replace("_", "-")) == value


class _Tree(HTMLParser):
    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.open[-1].children.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open[-1].children.append(Element(tag, {n: v or "" for n, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.parts.append(data)


def load(ui: ServedUi, path: str, tmp_path: Path, screenshot: Path | None = None) -> Element:
    """The page's DOM once its scripts ran, as headless Chromium leaves it. A second try
    if the page had not finished: on a busy machine Chromium's time budget can run out
    while Plotly (4.8 MB) is still being parsed."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"these tests need Chromium at {CHROMIUM} (Debian: apt-get install "
                    "chromium)")
    for _ in range(2):
        page = _chromium(ui, path, tmp_path, screenshot)
        if page.one("body").attrs.get("data-ready") == "true":
            return page
    pytest.fail(f"{path} did not finish drawing: {page.one('body').text[:500]}")


def _chromium(ui: ServedUi, path: str, tmp_path: Path, screenshot: Path | None) -> Element:
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:8]}"
    shot = [f"--screenshot={screenshot}"] if screenshot else []
    done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *shot,
                           "--dump-dom", ui.server.url.rstrip("/") + path],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"{path} logged to the console:\n" + "\n".join(console)
    parser = _Tree()
    parser.feed(done.stdout)
    return parser.root


def ytick_labels(chart: Element) -> list[str]:
    return [tick.text.rstrip(" ▶") for tick in chart.find_all("g", class_="ytick")]


def charts_drawn(page: Element, *ids: str) -> None:
    for chart_id in ids:
        chart = page.one(id=chart_id)
        assert chart.attrs.get("data-state") == "drawn", (chart_id, chart.text)
        assert chart.find_all("svg"), chart_id


# -- the pages ---------------------------------------------------------------------


def test_the_fleet_lists_every_model_version(ui: ServedUi, tmp_path: Path,
                                             screenshots: Path) -> None:
    page = load(ui, "/", tmp_path, screenshots / "fleet.png")
    rows = [row for row in page.one("table", id="fleet").find_all("tr")
            if "data-model" in row.attrs]
    assert sorted((r.attrs["data-model"], r.attrs["data-version"]) for r in rows) == sorted(
        (spec.model, spec.version) for spec in MODELS)
    v2 = next(r for r in rows if r.attrs["data-version"] == "v2")
    assert "1 critical" in v2.text  # its quality incident is still open
    assert v2.find_all("a", href="/model/fraud-detector?version=v2")
    assert_png(screenshots / "fleet.png")


def test_the_model_page_marks_the_drifting_feature(ui: ServedUi, clickhouse: Client,
                                                  tmp_path: Path, screenshots: Path) -> None:
    db = ui.server.settings.clickhouse_database
    (worst, psi, features), = clickhouse.query(
        f"SELECT argMax(feature, value), max(value), uniqExact(feature) "
        f"FROM {db}.drift_scores FINAL "
        "WHERE model = 'fraud-detector' AND model_version = 'v2' AND metric = 'psi'"
    ).result_rows
    shot = screenshots / "model-fraud-detector.png"
    page = load(ui, "/model/fraud-detector", tmp_path, shot)
    assert "version v2" in page.one("h1").text  # the newest version by default
    charts_drawn(page, "drift-heatmap", "histogram", "quality", "service", "gpus", "timeline")
    # The shift moves amount furthest: it stands out in the caption and on the chart.
    assert worst == "amount"
    heatmap = page.one(id="drift-heatmap")
    assert heatmap.attrs["data-worst-feature"] == "amount"
    assert float(heatmap.attrs["data-worst-psi"]) == pytest.approx(psi)
    caption = page.one(id="drift-caption").text
    assert caption.startswith(f"Most drifted: amount (PSI {psi:.3g} at "), caption
    # One row per feature scored (inputs and outputs); the worst one's label is bold.
    labels = ytick_labels(heatmap)
    assert int(heatmap.attrs["data-rows"]) == features == len(labels) == len(set(labels))
    assert {"amount", "country", "output.score"} <= set(labels)
    assert [t.text.rstrip(" ▶") for t in heatmap.find_all("tspan")
            if "font-weight:bold" in t.attrs.get("style", "").replace(" ", "")] == ["amount"]
    # The histogram defaults to the most drifted feature: its window against the reference.
    histogram = page.one(id="histogram")
    assert histogram.attrs["data-feature"] == "amount" and histogram.attrs["data-series"] == "2"
    assert len(histogram.find_all("g", class_="bars")) == 2
    assert "against its baseline reference" in page.one(id="histogram-caption").text
    assert page.one("a", data_feature="amount").attrs["class"].split()[0] == "current"
    # Its alerts: the quality incident, still open, and the drift incidents.
    keys = {li.attrs["data-dedup-key"]: li for li in page.find_all("li", class_="incident")}
    assert keys[QUALITY].attrs["data-state"] == "open"
    assert "drift:fraud-detector:v2:amount" in keys
    assert not any(key.startswith(("service:churn", "drift:fraud-detector:v1")) for key in keys)
    assert QUALITY in ytick_labels(page.one(id="timeline"))
    assert_png(shot)
    if os.environ.get("DRIFTLINE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, REPO / "tests/integration/screenshots/ui-model-page.png")


def test_a_chosen_feature_and_window(ui: ServedUi, tmp_path: Path) -> None:
    page = load(ui, f"/model/fraud-detector?version=v2&feature=country&window="
                    f"{T0 + 8 * 60_000}", tmp_path)
    histogram = page.one(id="histogram")
    assert histogram.attrs["data-feature"] == "country"
    assert histogram.attrs["data-window"] == "2025-11-27 08:08:00"
    assert "country in the window of 08:08 UTC" in page.one(id="histogram-caption").text


def test_the_churn_models_service_next_to_its_gpus(ui: ServedUi, clickhouse: Client,
                                                   tmp_path: Path, screenshots: Path) -> None:
    page = load(ui, "/model/" + quote("churn-predictor"), tmp_path,
                screenshots / "model-churn-predictor.png")
    charts_drawn(page, "drift-heatmap", "service", "gpus", "timeline")
    # The traffic's windows, and those a few stragglers fell in, up to two before.
    assert PLAN.windows <= int(page.one(id="service").attrs["data-windows"]) <= PLAN.windows + 2
    db = ui.server.settings.clickhouse_database
    (gpus,), = clickhouse.query(f"SELECT uniqExact(host, gpu_index) FROM {db}.gpu_windows "
                                "WHERE has(models, 'churn-predictor')").result_rows
    assert int(page.one(id="gpus").attrs["data-gpus"]) == gpus > 0
    keys = {li.attrs["data-dedup-key"] for li in page.find_all("li", class_="incident")}
    # Its own, its service chain's (no version) and its GPU host's incidents.
    assert {LATENCY, HOP} <= keys
    assert any(key.startswith("infrastructure:") for key in keys)
    assert not any(key.startswith("drift:fraud-detector") for key in keys)


def test_the_alert_timeline_shows_each_incident_with_its_evidence(
        ui: ServedUi, clickhouse: Client, tmp_path: Path, screenshots: Path) -> None:
    db = ui.server.settings.clickhouse_database
    summaries = dict(clickhouse.query(
        f"SELECT dedup_key, summary FROM {db}.alerts FINAL WHERE state = 'open'").result_rows)
    (incidents,), = clickhouse.query(f"SELECT uniqExact(id) FROM {db}.alerts").result_rows
    page = load(ui, "/alerts", tmp_path, screenshots / "alerts.png")
    charts_drawn(page, "timeline")
    timeline = page.one(id="timeline")
    assert int(timeline.attrs["data-incidents"]) == incidents
    on_timeline = ytick_labels(timeline)
    listed = {li.attrs["data-dedup-key"]: li for li in page.find_all("li", class_="incident")}
    assert len(page.find_all("li", class_="incident")) == incidents
    for key, state in ((QUALITY, "open"), (LATENCY, "resolved"), (HOP, "resolved")):
        assert key in on_timeline, key
        incident = listed[key]
        assert incident.attrs["data-state"] == state
        assert incident.one("p", class_="summary").text == " ".join(summaries[key].split())
        evidence = incident.one("table", class_="evidence")
        assert [row.find_all("td")[0].text for row in evidence.find_all("tr")[1:]] == (
            ["open"] if state == "open" else ["open", "resolved"])
    assert listed[LATENCY].one("p", class_="summary").text.startswith(
        "churn-predictor v2026.11: service latency degraded")
    assert listed[QUALITY].attrs["data-severity"] == "critical"
    assert_png(screenshots / "alerts.png")


def test_nothing_on_it_can_write_and_it_listens_on_127_0_0_1(ui: ServedUi,
                                                             clickhouse: Client) -> None:
    [(host, _)] = ui.server.addresses
    assert host == "127.0.0.1"
    db = ui.server.settings.clickhouse_database
    before = clickhouse.query(f"SELECT count() FROM {db}.alerts").result_rows
    for path in ("/", "/alerts", "/model/fraud-detector", "/api/fleet",
                 "/api/drift?model=fraud-detector", "/api/histogram?model=fraud-detector",
                 "/api/quality?model=fraud-detector", "/api/service?model=fraud-detector",
                 "/api/alerts", "/static/ui.js", "/static/plotly.min.js"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert status(ui, method, path) == 405, (method, path)
        assert status(ui, "GET", path) == 200, path
    assert clickhouse.query(f"SELECT count() FROM {db}.alerts").result_rows == before


def status(ui: ServedUi, method: str, path: str) -> int:
    async def ask() -> int:
        async with ClientSession() as session, session.request(
                method, ui.server.url.rstrip("/") + path, data=b"x=1") as response:
            await response.read()
            return response.status

    return asyncio.run_coroutine_threadsafe(ask(), ui.loop).result(60)


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, path


# -- names that look like markup ------------------------------------------------------

MARKUP = """<img src=x onerror="document.title='owned'">&amp;'"""


class MarkupReader(Reader):
    """A database whose every name (model, version, feature, category, host, dedup key,
    summary) is :data:`MARKUP`: each query answered from canned rows, no ClickHouse."""

    def __init__(self) -> None:
        super().__init__(Settings())
        m, t, minute = MARKUP, T0, 60_000
        reference = {"kind": "categorical", "categories": [m, "DE"], "counts": [5, 5],
                     "other_count": 0}
        alert = ("id-1", m, "open", "critical", m, m, m, m, 1.0, 0.5, t, t + minute, t,
                 t + minute, m)
        self.canned: dict[str, Sequence[Sequence[Any]]] = {
            queries.data_end("d").sql: [(t + 2 * minute,)],
            queries.fleet_windows("d").sql: [(m, m, 2, t, t + minute, 20)],
            queries.fleet_drift("d").sql: [(m, m, t, m, 0.9, "critical")],
            queries.open_incidents("d").sql: [(m, m, "critical", 1)],
            queries.versions("d", m).sql: [(m, t, t + minute, 2)],
            queries.features("d", m, m).sql: [("amount",), (m,)],
            queries.span_start("d", m, m).sql: [(t,)],
            queries.drift("d", m, m, 0).sql: [(m, t, 0.9, "critical"), (m, t + minute, 0.1, "ok"),
                                              ("amount", t, 0.2, "ok")],
            queries.feature_windows("d", m, m, m, 0).sql: [(t, 0.9), (t + minute, 0.1)],
            queries.feature_window("d", m, m, m, 0).sql: [
                ("categorical", t + minute, 10, 0, [], [], [m, "DE"], [6, 4], 0)],
            queries.reference_feature("d", m, m, m).sql: [
                ("baseline", "p", t, orjson.dumps(reference).decode())],
            queries.quality("d", m, m, 0).sql: [(t, 0.9, 0.8, 30.0, 8, 10)],
            queries.service("d", m, m, 0).sql: [(t, 10, 40.0, 0.0)],
            queries.gpus("d", m, 0).sql: [(m, 0, t, 50.0, 70.0, 0)],
            queries.gpu_hosts("d", m).sql: [(m,)],
            queries.alerts("d").sql: [alert],
            queries.model_alerts("d", m, m, ()).sql: [alert],
        }

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def rows(self, query: Query) -> Sequence[Sequence[Any]]:
        return self.canned.get(query.sql, [])


def test_names_that_look_like_markup_stay_text(tmp_path: Path) -> None:
    with ServedUi(Settings(), reader=MarkupReader()) as served:
        pages = {path: load(served, path, tmp_path)
                 for path in ("/", "/alerts", "/model/" + quote(MARKUP, safe=""))}
    for path, page in pages.items():
        assert not page.find_all("img"), path
        assert page.one("title").text.endswith("· driftline"), path
        assert MARKUP in page.one("main").text, path
    model = pages["/model/" + quote(MARKUP, safe="")]
    charts_drawn(model, "drift-heatmap", "histogram", "quality", "service", "gpus", "timeline")
    assert model.one(id="drift-heatmap").attrs["data-worst-feature"] == MARKUP
    assert MARKUP in ytick_labels(model.one(id="drift-heatmap"))
    assert MARKUP in ytick_labels(model.one(id="timeline"))
    assert model.one("li", class_="incident").attrs["data-dedup-key"] == MARKUP
