"""The asyncio publisher: an :class:`EventBuffer` drained to Kafka by one background task."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, SupportsFloat

from aiokafka import AIOKafkaProducer

from driftline.streams.kafka_options import kafka_client_options, stop_producer
from driftline.streams.publisher._buffer import Envelope, EventBuffer, PublisherStats
from driftline.streams.settings import Settings

log = logging.getLogger("driftline.streams.publisher")

_RECONNECT_MAX_S = 5.0
_WARN_EVERY_S = 10.0


def options_from_settings(settings: Settings) -> dict[str, Any]:
    """The publisher keyword arguments that :class:`Settings` determines (TLS, SASL, topics)."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "predictions_topic": settings.predictions_topic,
        "labels_topic": settings.labels_topic,
        # The worker refuses nothing below max_message_bytes, the broker's default is 1 MB.
        "max_envelope_bytes": min(900_000, settings.max_message_bytes),
        **kafka_client_options(settings),
    }


class AsyncPublisher:
    """Publish predictions, labels and outcomes to Kafka from asyncio serving code, in batches.

    ``log_prediction``, ``log_label`` and ``log_outcome`` are plain methods that only append
    to an in-memory columnar buffer (a few microseconds) and never raise; a background task
    sends a buffer as one envelope when it holds ``max_batch_events`` events or its
    oldest event is ``linger_ms`` old. Each model's envelopes are keyed by its name, so
    they land, in order, on one partition.

    Parameters
    ----------
    bootstrap_servers
        Kafka bootstrap servers, ``"host:port[,host:port]"``.
    predictions_topic, labels_topic
        Where prediction envelopes go, and where label and outcome envelopes go.
    max_batch_events
        A buffer holding this many events is sent at once.
    linger_ms
        A buffer is sent at the latest this long after its first event.
    max_buffered_events
        Memory bound: events buffered or in flight beyond this are dropped and counted
        in ``stats.dropped_buffer_full`` (for example while Kafka is unreachable).
    max_envelope_bytes
        Envelopes larger than this are split in halves until they fit.
    **producer_options
        Passed to :class:`aiokafka.AIOKafkaProducer` (``security_protocol``,
        ``sasl_mechanism``, ``ssl_context``, ``compression_type``, ...). ``acks`` defaults
        to ``"all"``.

    Examples
    --------
    With a broker at ``localhost:9092``::

        async with AsyncPublisher("localhost:9092") as publisher:
            publisher.log_prediction("fraud", "v3", "r-1", {"amount": 12.5, "country": "DE"},
                                     prediction="fraud", score=0.93)
            publisher.log_label("fraud", "r-1", "fraud")
            publisher.log_outcome("fraud", "r-1", {"chargeback": True,
                                                   "chargeback_amount": 129.9})
            await publisher.flush()
            print(publisher.stats.sent_events)  # 3

    Without a broker nothing is sent, but logging is the same:

    >>> publisher = AsyncPublisher("localhost:9092")
    >>> publisher.log_prediction("fraud", "v3", "r-1", {"amount": 12.5, "country": "DE"})
    True
    >>> publisher.log_prediction("fraud", "v3", "r-2", {"amount": {"nested": 1}})
    False
    >>> publisher.stats.accepted, publisher.stats.dropped_invalid
    (1, 1)
    """

    def __init__(self, bootstrap_servers: str, *,
                 predictions_topic: str = "driftline.predictions",
                 labels_topic: str = "driftline.labels", max_batch_events: int = 1000,
                 linger_ms: float = 200, max_buffered_events: int = 100_000,
                 max_envelope_bytes: int = 900_000, **producer_options: Any) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self.producer_options = {"acks": "all", "client_id": "driftline-publisher",
                                 **producer_options}
        self._buffer = EventBuffer(max_batch_events=max_batch_events, linger_ms=linger_ms,
                                   max_buffered_events=max_buffered_events,
                                   max_envelope_bytes=max_envelope_bytes)
        self._topics = {"prediction": predictions_topic, "label": labels_topic,
                        "outcome": labels_topic}
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wakeup = asyncio.Event()
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._closed = False
        self._warned_at = 0.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """A publisher configured from :class:`Settings` (``kafka_*`` and topic fields).

        ``overrides`` replace any keyword argument, e.g. ``linger_ms=50``.
        """
        options = {**options_from_settings(settings), **overrides}
        return cls(options.pop("bootstrap_servers"), **options)

    @property
    def stats(self) -> PublisherStats:
        """A copy of the counters: accepted, sent and dropped events."""
        return self._buffer.stats

    # --- the serving path ------------------------------------------------------------

    def log_prediction(self, model: str, version: str, request_id: str,
                       features: Mapping[str, Any], *, prediction: Any = None,
                       score: SupportsFloat | None = None,
                       probabilities: Mapping[Any, Any] | None = None,
                       latency_ms: SupportsFloat | None = None, status: str = "ok",
                       event_time_ms: int | None = None) -> bool:
        """Buffer one prediction; return False if it was dropped (invalid or buffer full).

        Never raises and never waits. ``features`` maps names to numbers, strings, bools
        (sent as 1/0) or None; NaN/inf become null. ``event_time_ms`` defaults to now (UTC
        epoch milliseconds).
        """
        return self._buffer.add_prediction(model, version, request_id, features, prediction,
                                           score, probabilities, latency_ms, status,
                                           event_time_ms)

    def log_label(self, model: str, request_id: str, label: str | SupportsFloat, *,
                  event_time_ms: int | None = None) -> bool:
        """Buffer the ground truth of one request; return False if it was dropped."""
        return self._buffer.add_label(model, request_id, label, event_time_ms)

    def log_outcome(self, model: str, request_id: str,
                    outcomes: Mapping[str, bool | SupportsFloat], *,
                    event_time_ms: int | None = None) -> bool:
        """Buffer business outcomes of one request; return False if they were dropped.

        An outcome is a business result of the prediction, reported when it is known,
        often long after: ``converted``, ``revenue``, ``clicked``, ``chargeback_amount``.
        ``outcomes`` maps names (1 to 256 characters) to finite numbers or bools (sent as
        1/0). Several calls for one request may report different outcomes; a later report
        of the same outcome for the same request replaces the earlier one. The whole call
        is dropped, and counted in ``stats.dropped_invalid``, if ``outcomes`` is empty or
        any name or value is invalid (NaN and ±inf included: an outcome is a measured
        fact). Never raises and never waits. ``event_time_ms`` defaults to now (UTC epoch
        milliseconds).
        """
        return self._buffer.add_outcome(model, request_id, outcomes, event_time_ms)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the producer and the background task; connecting happens in the task.

        A broker that is down delays sending (events stay buffered, within
        ``max_buffered_events``) but is no error: the task retries until it connects.
        """
        if self._closed or self._task is not None:
            raise RuntimeError("an AsyncPublisher can be started once")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                          **self.producer_options)
        self._buffer.on_ready = self._wake
        self._task = asyncio.create_task(self._run(), name="driftline-publisher")

    async def flush(self) -> bool:
        """Send everything buffered and wait for the broker's acknowledgements.

        Returns False if some send failed meanwhile. To bound the wait, wrap the call in
        :func:`asyncio.timeout`; cancelling it stops the waiting, not the sending.
        """
        if self._task is None or self._task.done():
            return self._buffer.held == 0
        failed = self._buffer.stats.dropped_send_failed
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        self._wake()
        await waiter  # the task has handed everything buffered over to the producer
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        return self._buffer.stats.dropped_send_failed == failed

    async def close(self, grace: float = 10.0) -> bool:
        """Flush for at most ``grace`` seconds, then stop; return whether all was sent.

        Events still unsent after ``grace`` seconds (broker down) are counted in
        ``stats.dropped_send_failed``; closing never takes much longer than ``grace``.
        """
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + grace
        self._buffer.close()  # from here on log_* refuse and count
        flushed = True
        if self._task is not None:
            try:
                async with asyncio.timeout(grace):
                    flushed = await self.flush()
            except TimeoutError:
                flushed = False
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        flushed = self._buffer.discard() == 0 and flushed
        if self._producer is not None:
            await stop_producer(self._producer, max(deadline - time.monotonic(), 0.0),
                                "driftline publisher")
        return flushed

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    # --- the background task ---------------------------------------------------------

    def _wake(self) -> None:
        """Wake the task; safe from any thread (the sync Publisher logs from others)."""
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: close() counts the rest
                self._loop.call_soon_threadsafe(self._wakeup.set)

    async def _run(self) -> None:
        await self._connect()
        while True:
            try:
                await self._send_due()
            except Exception:  # a bug here must not stop all publishing
                log.exception("driftline publisher: unexpected error while sending")
                await asyncio.sleep(1.0)
            delay = self._buffer.seconds_until_due()
            if delay != 0.0 and not self._flush_waiters:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()

    async def _send_due(self) -> None:
        self._wakeup.clear()  # before draining, so a wake-up during the sends is not lost
        waiters, self._flush_waiters = self._flush_waiters, []
        sent, envelopes = 0, []
        try:
            envelopes = self._buffer.drain(force=bool(waiters))
            for envelope in envelopes:
                await self._send(envelope)
                sent += 1
        finally:  # cancelled by close(): what was not handed over is lost, and counted
            for envelope in envelopes[sent:]:
                self._buffer.settle(envelope.events, delivered=False)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _send(self, envelope: Envelope) -> None:
        try:
            delivery = await self._producer.send(self._topics[envelope.kind], envelope.value,
                                                 key=envelope.key)
        except Exception as error:  # noqa: BLE001 - count, warn, keep going
            self._buffer.settle(envelope.events, delivered=False)
            self._warn("send failed, %d events dropped: %r", envelope.events, error)
            return
        self._in_flight.add(delivery)
        delivery.add_done_callback(functools.partial(self._delivered, envelope.events))

    def _delivered(self, events: int, delivery: asyncio.Future[Any]) -> None:
        self._in_flight.discard(delivery)
        error = None if delivery.cancelled() else delivery.exception()
        ok = not delivery.cancelled() and error is None
        self._buffer.settle(events, delivered=ok)
        if not ok:
            self._warn("delivery failed, %d events dropped: %r", events, error)

    async def _connect(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._producer.start()
                return
            except Exception as error:  # noqa: BLE001 - keep buffering and retry
                self._warn("cannot reach Kafka at %s (%r); retrying, events stay buffered",
                           self.bootstrap_servers, error)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _RECONNECT_MAX_S)

    def _warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now >= self._warned_at:
            self._warned_at = now + _WARN_EVERY_S
            log.warning("driftline publisher: " + message, *args)
