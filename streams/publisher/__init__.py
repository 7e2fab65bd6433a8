"""The publisher that serving code calls once per prediction, label and outcome report.

Events are buffered in memory per (model, version) as columns and sent to Kafka as
batch envelopes, keyed by model, by a background task. Logging never blocks on the
network and never raises: what cannot be accepted is dropped and counted in ``stats``.

- :class:`AsyncPublisher` for asyncio serving code (FastAPI, aiohttp, Ray Serve, ...);
- :class:`Publisher` for threaded serving code (Flask, gunicorn workers, batch jobs).
"""

from driftline.streams.publisher._async import AsyncPublisher
from driftline.streams.publisher._buffer import PublisherStats
from driftline.streams.publisher._sync import Publisher

__all__ = ["AsyncPublisher", "Publisher", "PublisherStats"]
