"""The label join's ClickHouse storage on the real embedded server: what is written is
found again by request id, corrections replace, settled labels stop waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import clickhouse_connect
import pytest

from driftline.models.quality.label_join import Label, Prediction, join
from driftline.sinks.label_store import LabelStore
from driftline.sinks.schema import statements

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000


@pytest.fixture
async def store(embedded_stack: Any, unique_name: str) -> AsyncIterator[LabelStore]:
    url = embedded_stack.settings_overrides()["clickhouse_url"]
    client = await clickhouse_connect.get_async_client(dsn=url)
    database = f"t_{unique_name}"
    for ddl in statements(database):
        await client.command(ddl)
    yield LabelStore(client, database)
    await client.close()


def ttl(model: str) -> int:
    return 7 * 86_400_000


async def test_a_label_before_its_prediction_waits_in_clickhouse_then_pairs(
        store: LabelStore) -> None:
    early = join([], [Label("m", "r1", T0 + W, "fraud", revision=3)], window_ms=W, ttl_ms=ttl)
    await store.put_waiting(early.waiting)
    waiting = await store.waiting([("m", "r1"), ("m", "nope")])
    assert list(waiting) == [("m", "r1")] and waiting[("m", "r1")].label == "fraud"

    prediction = Prediction("m", "v1", "r1", T0 + 5, "ok", 0.2, {"fraud": 0.2, "ok": 0.8})
    later = join([prediction], [], window_ms=W, ttl_ms=ttl, stored_labels=waiting)
    await store.put_predictions([prediction])
    await store.put_pairs(later.labeled)
    await store.put_waiting(later.waiting, [waiting[k] for k in later.settled])
    assert await store.waiting([("m", "r1")]) == {}
    (pair,) = (await store.pairs([("m", "r1")], W)).values()
    assert (pair.window_start, pair.label.label, pair.prediction.probabilities) == (
        T0, "fraud", {"fraud": 0.2, "ok": 0.8})
    assert (await store.predictions([("m", "r1")]))[("m", "r1")] == prediction


async def test_a_correction_replaces_the_stored_pair(store: LabelStore) -> None:
    prediction = Prediction("m", "v1", "r2", T0, "fraud")
    await store.put_predictions([prediction])
    first = join([], [Label("m", "r2", T0 + W, "fraud", revision=1)], window_ms=W,
                 ttl_ms=ttl, stored_predictions=await store.predictions([("m", "r2")]))
    await store.put_pairs(first.labeled)
    fix = join([], [Label("m", "r2", T0 + 2 * W, "ok", revision=9)], window_ms=W, ttl_ms=ttl,
               stored_predictions=await store.predictions([("m", "r2")]),
               stored_pairs=await store.pairs([("m", "r2")], W))
    assert [r.label.label for r in fix.retracted] == ["fraud"]
    await store.put_pairs(fix.labeled)
    await asyncio.sleep(0)
    pairs = await store.pairs([("m", "r2")], W)
    assert pairs[("m", "r2")].label.label == "ok"
    count = await store.client.query(
        f"SELECT count() FROM {store.database}.labeled_predictions FINAL")
    assert count.result_rows[0][0] == 1
