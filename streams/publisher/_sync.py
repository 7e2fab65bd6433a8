"""The publisher for threaded serving code: an AsyncPublisher on its own loop and thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import threading
import weakref
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, Self, SupportsFloat, TypeVar

from driftline.streams.publisher._async import AsyncPublisher, options_from_settings
from driftline.streams.publisher._buffer import PublisherStats
from driftline.streams.settings import Settings

log = logging.getLogger("driftline.streams.publisher")

T = TypeVar("T")
# What a forked child inherited from its parent's publishers: kept, never closed or collected.
_INHERITED: list[Any] = []
_START_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 5.0


class Publisher:
    """Publish predictions, labels and outcomes to Kafka from synchronous serving code.

    For Flask/Django views, gunicorn workers and batch jobs: an :class:`AsyncPublisher`
    runs on its own event loop in a daemon thread, started by the constructor.
    ``log_prediction``, ``log_label`` and ``log_outcome`` are thread-safe, take a few
    microseconds, never wait for the network and never raise. Buffered events are flushed
    by :meth:`close`, which also runs when the publisher is garbage collected or the
    interpreter exits.
    A publisher inherited through a fork (gunicorn ``--preload``, multiprocessing) starts
    afresh in the child on first use; what the parent had buffered is the parent's to send.

    Parameters
    ----------
    bootstrap_servers, predictions_topic, labels_topic, max_batch_events, linger_ms, \
max_buffered_events, max_envelope_bytes, **producer_options
        As for :class:`AsyncPublisher`.

    Examples
    --------
    With a broker at ``localhost:9092``::

        publisher = Publisher("localhost:9092")          # once, at start-up
        publisher.log_prediction("fraud", "v3", "r-1", {"amount": 12.5, "country": "DE"},
                                 prediction="fraud", score=0.93, latency_ms=4.2)
        publisher.log_label("fraud", "r-1", "fraud")     # when the truth is known
        publisher.log_outcome("fraud", "r-1", {"chargeback": True})  # the business result
        publisher.close(timeout=10.0)                    # at shutdown: flushes

    or ``with Publisher("localhost:9092") as publisher: ...``.
    """

    def __init__(self, bootstrap_servers: str, *,
                 predictions_topic: str = "driftline.predictions",
                 labels_topic: str = "driftline.labels", max_batch_events: int = 1000,
                 linger_ms: float = 200, max_buffered_events: int = 100_000,
                 max_envelope_bytes: int = 900_000, **producer_options: Any) -> None:
        options = dict(predictions_topic=predictions_topic, labels_topic=labels_topic,
                       max_batch_events=max_batch_events, linger_ms=linger_ms,
                       max_buffered_events=max_buffered_events,
                       max_envelope_bytes=max_envelope_bytes, **producer_options)
        self._bootstrap_servers, self._options = bootstrap_servers, options
        self._launch()
        self._forked = False
        self._fork_lock = threading.Lock()
        os.register_at_fork(after_in_child=functools.partial(_forked, weakref.ref(self)))

    def _launch(self) -> None:
        self._publisher = AsyncPublisher(self._bootstrap_servers, **self._options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_serve, args=(self._loop,), daemon=True,
                                        name="driftline-publisher")
        self._thread.start()
        try:
            _call(self._loop, self._publisher.start(), _START_TIMEOUT_S)
        except BaseException:
            _shutdown(self._publisher, self._loop, self._thread, 0.0)
            raise
        # Flushes at garbage collection or interpreter exit too; holds no reference to self.
        self._finalizer = weakref.finalize(self, _shutdown, self._publisher, self._loop,
                                           self._thread, 10.0)

    def _relaunch_after_fork(self) -> None:
        """In a forked child (gunicorn --preload): start afresh on first use.

        The inherited buffer, loop and sockets belong to the parent, which sends what was
        buffered; they stay referenced and untouched here, so nothing is sent twice.
        """
        with self._fork_lock:
            if not self._forked:
                return
            _INHERITED.append((self._publisher, self._loop, self._thread, self._finalizer))
            self._finalizer.detach()
            self._forked = False
            try:
                self._launch()
            except Exception:  # serving must go on; events are then buffered and dropped
                log.exception("driftline publisher: could not restart after fork")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """A publisher configured from :class:`Settings` (``kafka_*`` and topic fields)."""
        options = {**options_from_settings(settings), **overrides}
        return cls(options.pop("bootstrap_servers"), **options)

    @property
    def stats(self) -> PublisherStats:
        """A copy of the counters: accepted, sent and dropped events."""
        return self._publisher.stats

    def log_prediction(self, model: str, version: str, request_id: str,
                       features: Mapping[str, Any], *, prediction: Any = None,
                       score: SupportsFloat | None = None,
                       probabilities: Mapping[Any, Any] | None = None,
                       latency_ms: SupportsFloat | None = None, status: str = "ok",
                       event_time_ms: int | None = None) -> bool:
        """Buffer one prediction; see :meth:`AsyncPublisher.log_prediction`."""
        if self._forked:
            self._relaunch_after_fork()
        return self._publisher.log_prediction(
            model, version, request_id, features, prediction=prediction, score=score,
            probabilities=probabilities, latency_ms=latency_ms, status=status,
            event_time_ms=event_time_ms)

    def log_label(self, model: str, request_id: str, label: str | SupportsFloat, *,
                  event_time_ms: int | None = None) -> bool:
        """Buffer the ground truth of one request; return False if it was dropped."""
        if self._forked:
            self._relaunch_after_fork()
        return self._publisher.log_label(model, request_id, label, event_time_ms=event_time_ms)

    def log_outcome(self, model: str, request_id: str,
                    outcomes: Mapping[str, bool | SupportsFloat], *,
                    event_time_ms: int | None = None) -> bool:
        """Buffer business outcomes of one request (``converted``, ``revenue``, ...);
        return False if they were dropped. Several calls for one request may report
        different outcomes, and a later report of the same outcome replaces the earlier
        one. See :meth:`AsyncPublisher.log_outcome`.
        """
        if self._forked:
            self._relaunch_after_fork()
        return self._publisher.log_outcome(model, request_id, outcomes,
                                           event_time_ms=event_time_ms)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything buffered and wait (at most ``timeout`` s) for the broker's acks.

        Returns False on timeout or if some send failed; never raises.
        """
        if self._forked:
            self._relaunch_after_fork()
        if not self._finalizer.alive:
            return True  # closed: close() flushed what it could, nothing is buffered
        try:
            return _call(self._loop, self._publisher.flush(), timeout)
        except concurrent.futures.TimeoutError:
            return False
        except Exception as error:  # noqa: BLE001 - flushing must not raise into serving code
            log.warning("driftline publisher: flush failed: %r", error)
            return False

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread; never raises."""
        if self._forked:
            self._relaunch_after_fork()
        if self._finalizer.detach() is None:
            return True  # closed already
        return _shutdown(self._publisher, self._loop, self._thread, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _forked(publisher: weakref.ref[Publisher]) -> None:
    """Runs in the child right after a fork: the publisher's thread did not survive it."""
    alive = publisher()
    if alive is not None and alive._finalizer.alive:
        alive._fork_lock = threading.Lock()  # a lock held at the fork would stay held
        alive._forked = True


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:  # what asyncio.run does at its end: cancel leftovers, then close the loop
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def _call(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T],
          timeout: float) -> T:
    """Run ``coroutine`` on the publisher's loop and wait for it from this thread."""
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()  # cancels the waiting; what is buffered keeps being sent
        raise


def _shutdown(publisher: AsyncPublisher, loop: asyncio.AbstractEventLoop,
              thread: threading.Thread, timeout: float) -> bool:
    """Close the publisher, then stop its loop and thread; never raises."""
    if threading.current_thread() is thread:  # garbage collected on its own thread
        loop.create_task(publisher.close(grace=timeout)).add_done_callback(
            lambda _: loop.stop())
        return False
    flushed = False
    try:
        if thread.is_alive():
            flushed = _call(loop, publisher.close(grace=timeout), timeout + _JOIN_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - shutting down must not raise
        log.warning("driftline publisher: close did not finish: %r", error)
    if thread.is_alive():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_JOIN_TIMEOUT_S)
    return flushed
