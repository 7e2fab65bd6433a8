"""Faust records serialise to exactly what the worker decodes."""

from __future__ import annotations

from driftline.models.events.records import LabelEvent, PredictionEvent
from driftline.models.events.wire import decode


def test_prediction_record_is_a_valid_single_event() -> None:
    event = PredictionEvent(model="fraud", version="v2", request_id="r1",
                            features={"amount": 12.5, "country": "DE", "age": None},
                            score=0.9, event_time=1_764_230_400_000)
    block = decode(b"fraud", event.dumps())
    assert (block.kind, block.model, block.version, block.request_id) == (
        "prediction", "fraud", "v2", ["r1"])
    assert block.features == {"amount": [12.5], "country": ["DE"], "age": [None],
                              "output.score": [0.9], "service.status": ["ok"]}
    assert block.score == [0.9] and block.status == ["ok"]


def test_label_record_is_a_valid_single_event_with_a_default_time() -> None:
    block = decode(b"fraud", LabelEvent(model="fraud", request_id="r1", label=1).dumps())
    assert (block.kind, block.label, block.request_id) == ("label", [1], ["r1"])
    assert block.event_time[0] > 1_700_000_000_000
