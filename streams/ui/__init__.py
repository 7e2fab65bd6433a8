"""``driftline ui``: a small read-only web page over driftline's ClickHouse tables.

The fleet, a model's drift heatmap, a feature's histogram against its reference, quality
over time, the service next to its GPUs, and the alert timeline with each incident's
evidence. Pages are plain HTML from the server; their charts are drawn in the browser by
Plotly.js, served from the ``plotly`` wheel (no CDN, no Node build).

Read-only by construction: only GET (and HEAD) routes, every other method is answered 405,
and every query is a SELECT with bound parameters that ClickHouse runs in read-only mode.

- :mod:`~driftline.streams.ui.queries`: the SQL, and what a name from a URL may be;
- :mod:`~driftline.streams.ui.shaping`: result rows to the JSON the charts draw;
- :mod:`~driftline.streams.ui.pages`: the HTML;
- :mod:`~driftline.streams.ui.reader`: runs the queries on an async ClickHouse client;
- :mod:`~driftline.streams.ui.server`: the aiohttp application, :func:`serve` and
  :func:`offer_after_demo`.
"""

from __future__ import annotations

from driftline.streams.ui.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    UiServer,
    build_app,
    offer_after_demo,
    serve,
)

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "UiServer", "build_app", "offer_after_demo", "serve"]
