"""Faust records for the single-event wire form, for producers written with Faust.

The worker decodes raw bytes itself (:mod:`driftline.models.events.wire`) to build numpy columns
without a per-event object; these records are for Python producers that want typed events::

    await predictions_topic.send(key=event.model, value=event)

Never rename a record class: Faust writes its name into payloads that keep metadata.
"""

from __future__ import annotations

import time

import faust


def _now_ms() -> int:
    return int(time.time() * 1000)


class PredictionEvent(faust.Record, serializer="json", include_metadata=False):
    """One prediction, as ``{"type": "prediction", ...}`` on the predictions topic."""

    model: str
    version: str
    request_id: str
    features: dict[str, float | int | str | None]
    #: UTC epoch milliseconds; 0 means "now".
    event_time: int = 0
    prediction: float | int | str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    latency_ms: float | None = None
    status: str = "ok"
    type: str = "prediction"

    def __post_init__(self) -> None:
        self.event_time = self.event_time or _now_ms()


class LabelEvent(faust.Record, serializer="json", include_metadata=False):
    """The ground truth for one prediction, as ``{"type": "label", ...}``."""

    model: str
    request_id: str
    label: float | int | str
    #: UTC epoch milliseconds; 0 means "now".
    event_time: int = 0
    type: str = "label"

    def __post_init__(self) -> None:
        self.event_time = self.event_time or _now_ms()
