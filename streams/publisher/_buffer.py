"""Per-model columnar buffers and the batch envelopes they encode to; no Kafka here.

Serving code appends one event at a time; the worker wants columns it can turn into
numpy arrays without a per-event loop. So events go straight into columns (one list per
field and per feature or outcome name), and a drained buffer is encoded as one JSON
document.

>>> buffer = EventBuffer(max_batch_events=100, linger_ms=0, max_buffered_events=1000,
...                      max_envelope_bytes=10_000)
>>> buffer.add_label("fraud", "r-1", "fraud", event_time_ms=1764230460000)
True
>>> envelope, = buffer.drain(force=True)
>>> envelope.kind, envelope.key, envelope.events
('label', b'fraud', 1)
>>> envelope.value.decode()
'{"type":"label_batch","model":"fraud","request_id":["r-1"],"event_time":[1764230460000],"label":["fraud"]}'
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from driftline.streams.publisher._values import (
    Column,
    Rejected,
    append_row,
    count_nonfinite,
    null_if_nonfinite,
    request_and_time,
    to_mapping,
    to_outcomes,
    to_scalar,
    to_text,
    truncate,
)

log = logging.getLogger("driftline.streams.publisher")

Kind = Literal["prediction", "label", "outcome"]

# The wire format lets an envelope omit these when every one of its events lacks them.
_OPTIONAL = frozenset({"prediction", "score", "probabilities", "latency_ms"})
# Null in these means "not reported", so a piece of a split envelope leaves out the names
# none of its events report: smaller pieces, and a name that cannot be encoded loses only
# the events reporting it.
_SPARSE = frozenset({"outcomes"})
_WARN_EVERY_S = 10.0


@dataclasses.dataclass
class PublisherStats:
    """Counters since the publisher was created; ``publisher.stats`` returns a copy.

    Attributes
    ----------
    accepted
        Events ``log_*`` took (and returned True for).
    sent_events, sent_envelopes
        Events, and the envelopes carrying them, that the broker acknowledged.
    dropped_buffer_full
        Events refused because ``max_buffered_events`` were buffered or in flight.
    dropped_invalid
        Events refused as invalid, plus accepted ones that alone encode to more than
        ``max_envelope_bytes`` (or to invalid UTF-8).
    dropped_send_failed
        Accepted events whose send failed or that were unsent when the publisher closed,
        plus events logged after closing.
    nonfinite_values_nulled
        NaN/±inf values sent as null.

    Once accepted, an event ends up in ``sent_events``, ``dropped_send_failed`` or
    ``dropped_invalid``; until then it is buffered or in flight.
    """

    accepted: int = 0
    sent_events: int = 0
    sent_envelopes: int = 0
    dropped_buffer_full: int = 0
    dropped_invalid: int = 0
    dropped_send_failed: int = 0
    nonfinite_values_nulled: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """One Kafka message: which topic it is for, its key and value, how many events."""

    kind: Kind
    key: bytes
    value: bytes
    events: int


class _Batch:
    """The columns of one buffer: predictions of one (model, version), or the labels or
    the outcomes of a model."""

    __slots__ = ("event_time", "features", "kind", "label", "latency_ms", "model", "opened",
                 "outcomes", "prediction", "probabilities", "request_id", "score", "status",
                 "version")

    def __init__(self, kind: Kind, model: str, version: str | None, opened: float) -> None:
        self.kind, self.model, self.version, self.opened = kind, model, version, opened
        self.request_id: Column = []
        self.event_time: Column = []
        self.features: dict[str, Column] = {}
        self.prediction: Column = []
        self.score: Column = []
        self.probabilities: dict[str, Column] = {}
        self.latency_ms: Column = []
        self.status: Column = []
        self.label: Column = []
        self.outcomes: dict[str, Column] = {}

    def document(self, lo: int, hi: int) -> dict[str, Any]:
        """The envelope of events ``lo:hi``, before JSON encoding."""
        doc: dict[str, Any] = {"type": f"{self.kind}_batch", "model": self.model}
        columns: dict[str, Any] = {"request_id": self.request_id,
                                   "event_time": self.event_time}
        if self.kind == "prediction":
            doc["version"] = self.version
            columns.update(features=self.features, prediction=self.prediction,
                           score=self.score, probabilities=self.probabilities,
                           latency_ms=self.latency_ms, status=self.status)
        elif self.kind == "label":
            columns["label"] = self.label
        else:
            columns["outcomes"] = self.outcomes
        whole = lo == 0 and hi == len(self.request_id)
        for name, column in columns.items():
            if isinstance(column, dict):
                part: Any = column if whole else {k: c[lo:hi] for k, c in column.items()}
                if name in _SPARSE and not whole:
                    part = {k: c for k, c in part.items() if c.count(None) != len(c)}
                present = any(c.count(None) != len(c) for c in part.values())
            else:
                part = column if whole else column[lo:hi]
                present = part.count(None) != len(part)
            if present or name not in _OPTIONAL:
                doc[name] = part
        return doc


# --- the buffer ---------------------------------------------------------------------


class EventBuffer:
    """Thread-safe columnar buffers, one per (model, version) of predictions and per model
    of labels and of outcomes, bounded to ``max_buffered_events`` counting events still in
    flight.

    ``add_*`` never raise: invalid events are counted and dropped. ``on_ready`` (if set)
    is called, outside the lock, when a buffer opens or fills, so a flusher can wake up.
    """

    def __init__(self, *, max_batch_events: int, linger_ms: float, max_buffered_events: int,
                 max_envelope_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("max_batch_events", max_batch_events),
                            ("max_buffered_events", max_buffered_events),
                            ("max_envelope_bytes", max_envelope_bytes)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {linger_ms}")
        self.max_batch_events = max_batch_events
        self.linger_ms = linger_ms
        self.max_buffered_events = max_buffered_events
        self.max_envelope_bytes = max_envelope_bytes
        self.on_ready: Callable[[], None] | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._stats = PublisherStats()
        self._predictions: dict[tuple[str, str], _Batch] = {}
        self._labels: dict[str, _Batch] = {}
        self._outcomes: dict[str, _Batch] = {}
        self._sealed: list[_Batch] = []  # full buffers waiting for the flusher, oldest first
        self._held = 0  # events buffered or in flight
        self._closed = False
        self._warned_at: dict[str, float] = {}

    @property
    def stats(self) -> PublisherStats:
        with self._lock:
            return dataclasses.replace(self._stats)

    @property
    def held(self) -> int:
        """Events accepted and not yet acknowledged or dropped."""
        return self._held

    def add_prediction(self, model: str, version: str, request_id: str,
                       features: Mapping[str, Any], prediction: Any = None, score: Any = None,
                       probabilities: Mapping[str, Any] | None = None, latency_ms: Any = None,
                       status: str = "ok", event_time_ms: int | None = None) -> bool:
        """Buffer one prediction; False (and counted) when invalid, full or closed."""
        nulled = 0
        try:
            request_id, event_time_ms = request_and_time(request_id, event_time_ms)
            if type(features) is not dict:
                features = to_mapping(features, "features")
            if probabilities is not None and type(probabilities) is not dict:
                probabilities = to_mapping(probabilities, "probabilities")
            if type(status) is not str:
                status = "ok" if status is None else to_text(status, "status")
            if prediction is not None and type(prediction) is not str:
                prediction, nulled = null_if_nonfinite(prediction, "prediction", False, nulled)
            if score is not None:
                score, nulled = null_if_nonfinite(score, "score", True, nulled)
            if latency_ms is not None:
                latency_ms, nulled = null_if_nonfinite(latency_ms, "latency_ms", True, nulled)
            with self._lock:
                if self._closed or self._held >= self.max_buffered_events:
                    return self._refuse("prediction")
                batch = self._predictions.get((model, version))
                wake = batch is None  # a new buffer brings a new deadline to the flusher
                if batch is None:
                    key = (to_text(model, "model"), to_text(version, "version"))
                    batch = _Batch("prediction", *key, opened=self._clock())
                n = len(batch.request_id)
                width = len(batch.features)
                append_row(batch.features, n, features, numeric=False)
                if probabilities is not None or batch.probabilities:
                    try:
                        append_row(batch.probabilities, n, probabilities or {}, numeric=True)
                    except BaseException:
                        truncate(batch.features, n, width)
                        raise
                batch.request_id.append(request_id)
                batch.event_time.append(event_time_ms)
                batch.prediction.append(prediction)
                batch.score.append(score)
                batch.latency_ms.append(latency_ms)
                batch.status.append(status)
                if wake:  # only now: a rejected first event must leave no empty buffer
                    self._predictions[key] = batch
                self._held += 1
                self._stats.accepted += 1
                if nulled:
                    self._stats.nonfinite_values_nulled += nulled
                if n + 1 >= self.max_batch_events:
                    wake = self._seal(self._predictions, (batch.model, version))
        except Exception as error:  # noqa: BLE001 - serving code must never see an exception
            return self._reject("prediction", model, error)
        if wake and self.on_ready is not None:
            self.on_ready()
        return True

    def add_label(self, model: str, request_id: str, label: Any,
                  event_time_ms: int | None = None) -> bool:
        """Buffer one label; False (and counted) when invalid, full or closed."""
        try:
            request_id, event_time_ms = request_and_time(request_id, event_time_ms)
            if type(label) is not str:
                label = to_scalar(label, "label", numeric=False)
                if label is None or label != label or label in (math.inf, -math.inf):
                    raise Rejected("label must be a finite number or a string")
            with self._lock:
                if self._closed or self._held >= self.max_buffered_events:
                    return self._refuse("label")
                batch = self._labels.get(model)
                wake = batch is None
                if batch is None:
                    name = to_text(model, "model")
                    batch = self._labels[name] = _Batch("label", name, None,
                                                        opened=self._clock())
                batch.request_id.append(request_id)
                batch.event_time.append(event_time_ms)
                batch.label.append(label)
                self._held += 1
                self._stats.accepted += 1
                if len(batch.request_id) >= self.max_batch_events:
                    wake = self._seal(self._labels, batch.model)
        except Exception as error:  # noqa: BLE001 - serving code must never see an exception
            return self._reject("label", model, error)
        if wake and self.on_ready is not None:
            self.on_ready()
        return True

    def add_outcome(self, model: str, request_id: str, outcomes: Mapping[str, Any],
                    event_time_ms: int | None = None) -> bool:
        """Buffer the business outcomes of one request; False (and counted) when invalid,
        full or closed. A name this buffer has not seen yet gets nulls for earlier events.
        """
        try:
            request_id, event_time_ms = request_and_time(request_id, event_time_ms)
            row = to_outcomes(outcomes)
            with self._lock:
                if self._closed or self._held >= self.max_buffered_events:
                    return self._refuse("outcome")
                batch = self._outcomes.get(model)
                wake = batch is None
                if batch is None:
                    name = to_text(model, "model")
                    batch = _Batch("outcome", name, None, opened=self._clock())
                append_row(batch.outcomes, len(batch.request_id), row, numeric=True)
                batch.request_id.append(request_id)
                batch.event_time.append(event_time_ms)
                if wake:  # only now: a rejected first event must leave no empty buffer
                    self._outcomes[batch.model] = batch
                self._held += 1
                self._stats.accepted += 1
                if len(batch.request_id) >= self.max_batch_events:
                    wake = self._seal(self._outcomes, batch.model)
        except Exception as error:  # noqa: BLE001 - serving code must never see an exception
            return self._reject("outcome", model, error)
        if wake and self.on_ready is not None:
            self.on_ready()
        return True

    def seconds_until_due(self) -> float | None:
        """How long until some buffer is due for sending; None when nothing is buffered."""
        with self._lock:
            if self._sealed:
                return 0.0
            opened = [b.opened for b in self._predictions.values()]
            opened += [b.opened for b in self._labels.values()]
            opened += [b.opened for b in self._outcomes.values()]
        if not opened:
            return None
        return max(0.0, min(opened) + self.linger_ms / 1000 - self._clock())

    def drain(self, *, force: bool = False) -> list[Envelope]:
        """Take the buffers that are full or lingered long enough (all with ``force``)."""
        now, linger = self._clock(), self.linger_ms / 1000
        with self._lock:
            batches, self._sealed = self._sealed, []
            books: tuple[dict[Any, _Batch], ...] = (self._predictions, self._labels,
                                                    self._outcomes)
            for book in books:
                due = [key for key, b in book.items() if force or b.opened + linger <= now]
                batches.extend(book.pop(key) for key in due)
        envelopes: list[Envelope] = []
        nonfinite = 0
        for batch in batches:
            if batch.request_id:
                nonfinite += count_nonfinite(batch.features)
                nonfinite += count_nonfinite(batch.probabilities)
                self._encode(batch, 0, len(batch.request_id), envelopes)
        if nonfinite:
            with self._lock:
                self._stats.nonfinite_values_nulled += nonfinite
        return envelopes

    def settle(self, events: int, *, delivered: bool) -> None:
        """Record the broker's answer for an envelope of ``events`` events."""
        with self._lock:
            self._held -= events
            if delivered:
                self._stats.sent_events += events
                self._stats.sent_envelopes += 1
            else:
                self._stats.dropped_send_failed += events

    def close(self) -> None:
        """Refuse new events from now on (they are counted in ``dropped_send_failed``)."""
        with self._lock:
            self._closed = True

    def discard(self) -> int:
        """Drop whatever is still buffered, counted as failed sends; return how many."""
        with self._lock:
            batches = [*self._sealed, *self._predictions.values(), *self._labels.values(),
                       *self._outcomes.values()]
            self._sealed, self._predictions, self._labels, self._outcomes = [], {}, {}, {}
            dropped = sum(len(b.request_id) for b in batches)
            self._held -= dropped
            self._stats.dropped_send_failed += dropped
        return dropped

    # --- internals (``_refuse`` and ``_seal`` run under the lock) ----------------------

    def _refuse(self, kind: Kind) -> bool:
        if self._closed:
            self._stats.dropped_send_failed += 1
            self._warn("closed", "closed, dropping %s events (%d dropped so far)",
                       kind, self._stats.dropped_send_failed)
        else:
            self._stats.dropped_buffer_full += 1
            self._warn("full", "buffer full (max_buffered_events=%d): dropping "
                       "new events, %d so far; is Kafka reachable?",
                       self.max_buffered_events, self._stats.dropped_buffer_full)
        return False

    def _seal(self, book: dict[Any, _Batch], key: Any) -> bool:
        self._sealed.append(book.pop(key))
        return True

    def _reject(self, kind: Kind, model: Any, error: Exception) -> bool:
        reason = str(error) if isinstance(error, Rejected) else repr(error)
        with self._lock:
            self._stats.dropped_invalid += 1
            self._warn("invalid", "dropped an invalid %s event of model %.80r: %s "
                       "(%d invalid so far)", kind, model, reason, self._stats.dropped_invalid)
        return False

    def _encode(self, batch: _Batch, lo: int, hi: int, out: list[Envelope]) -> None:
        """Encode events ``lo:hi``, halving until each envelope fits max_envelope_bytes."""
        try:
            value = orjson.dumps(batch.document(lo, hi))
            problem = "" if len(value) <= self.max_envelope_bytes else (
                f"it alone encodes to {len(value)} bytes > max_envelope_bytes")
        except orjson.JSONEncodeError as error:  # e.g. a string with a lone surrogate
            value, problem = b"", str(error)
        if not problem:
            out.append(Envelope(batch.kind, batch.model.encode(), value, hi - lo))
        elif hi - lo == 1:
            with self._lock:
                self._held -= 1
                self._stats.dropped_invalid += 1
                self._warn("unencodable", "dropped a %s event of model %r: %s",
                           batch.kind, batch.model, problem)
        else:  # split in halves: only the culprit is lost, and envelopes stay under the limit
            middle = (lo + hi) // 2
            self._encode(batch, lo, middle, out)
            self._encode(batch, middle, hi, out)

    def _warn(self, topic: str, message: str, *args: Any) -> None:
        """Log at most once per topic every few seconds, so a flood of drops is one line."""
        now = self._clock()
        if now >= self._warned_at.get(topic, -math.inf):
            self._warned_at[topic] = now + _WARN_EVERY_S
            log.warning("driftline publisher: " + message, *args)
