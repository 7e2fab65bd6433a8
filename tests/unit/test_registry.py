"""Registry records and what the worker makes of them: checked records, the latest record
of a key wins, tombstones withdraw, and the line an alert gets."""

from __future__ import annotations

import pytest

from driftline.models.registry.records import Deployment, ModelVersion, RecordError, decode_record
from driftline.streams.registry import RegistryStore
from driftline.streams.settings import Settings

T0 = 1_764_230_400_000


def test_records_round_trip_and_bad_ones_say_why() -> None:
    v = ModelVersion("m", "v1", T0, training_metrics={"auc": 0.9}, parameters={"depth": 6})
    assert decode_record(v.to_json()) == v and v.parameters == {"depth": "6"}
    d = Deployment("m", "v1", "rolled_back", T0, traffic_share=0)
    assert decode_record(d.to_json()) == d
    for make, message in [(lambda: ModelVersion("", "v1", T0), "model"),
                          (lambda: ModelVersion("m", "v1", 1_764_230_400), "epoch milli"),
                          (lambda: ModelVersion("m", "v", T0, training_metrics={"a": "x"}),
                           "finite number"),
                          (lambda: Deployment("m", "v", "launched", T0), "event"),  # type: ignore[arg-type]
                          (lambda: Deployment("m", "v", "deployed", T0, traffic_share=2),
                           "between 0 and 1")]:
        with pytest.raises(RecordError, match=message):
            make()
    for raw, message in [(b"{", "not valid JSON"), (b'{"type": "x"}', "unknown registry"),
                         (b'{"type": "deployment", "model": "m", "version": "v", '
                          b'"event": "deployed", "at_ms": 1764230400000, "who": 1}',
                          "unknown fields")]:
        with pytest.raises(RecordError, match=message):
            decode_record(raw)


def test_the_store_keeps_the_latest_record_of_each_key_and_describes_versions() -> None:
    store = RegistryStore(Settings())
    v1 = ModelVersion("m", "v1", T0, training_run_id="r1", training_data="s3://a")
    assert store.registered("m", "v1") is None  # the model does not use the registry
    assert store._apply(v1.key, v1.to_json(), 0)
    assert store.registered("m", "v1") and store.registered("m", "v2") is False
    again = ModelVersion("m", "v1", T0, training_run_id="r2", training_data="s3://b")
    store._apply(again.key, again.to_json(), 1)
    live = Deployment("m", "v1", "deployed", T0 + 3_600_000, traffic_share=0.25,
                      environment="prod")
    store._apply(live.key, live.to_json(), 2)
    assert store.describe("m", "v1") == ("deployed to prod 2025-11-27 09:00 UTC, 25% of "
                                         "traffic; trained on s3://b (run r2) 2025-11-27 "
                                         "08:00 UTC")
    assert not store._apply(b"version:m/v9", v1.to_json(), 3)  # key and record disagree
    assert not store._apply(b"version:m/v1", b"junk", 4)
    assert store._apply(v1.key, None, 5)  # tombstone: withdrawn
    assert store.registered("m", "v1") is None and store.describe("m", "v1").startswith(
        "deployed")
    assert [r.key for r in store.take_unwritten()] == [v1.key, again.key, live.key]
