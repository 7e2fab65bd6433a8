"""Reference profiles on the real embedded broker and ClickHouse: publish, follow, replace."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path
from typing import Any

import clickhouse_connect
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from rich.console import Console

from driftline.models.drift.reference import ReferenceProfile
from driftline.models.drift.reference_build import build_profile
from driftline.streams.embedded import tansu_compat
from driftline.streams.reference.profiles import ReferenceStore, publish_command, publish_profiles
from driftline.streams.settings import Settings

pytestmark = pytest.mark.integration

T0 = 1_764_230_400_000


@pytest.fixture
def settings(embedded_stack: Any, unique_name: str) -> Settings:
    tansu_compat.install()  # as the worker does when broker_flavor == "tansu"
    return Settings().replace(**embedded_stack.settings_overrides(),
                              references_topic=f"references-{unique_name}",
                              clickhouse_database=f"t_{unique_name}")


def profile(model: str, version: str, seed: int, created_at_ms: int = T0) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    return build_profile(model, version, {
        "amount": rng.lognormal(3.0, 1.0, 2_000),
        "country": rng.choice(["DE", "FR", "US"], 2_000),
        "n_items": rng.integers(1, 4, 2_000),
    }, created_at_ms=created_at_ms)


async def eventually(check: Any) -> None:
    for _ in range(600):  # 30 s
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met within 30 s")


async def produce_raw(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(settings.references_topic, value, key=key)
    finally:
        await producer.stop()


async def live_rows(settings: Settings) -> list[tuple[Any, ...]]:
    client = await clickhouse_connect.get_async_client(dsn=settings.clickhouse_url)
    try:
        result = await client.query(
            "SELECT model, model_version, source, profile_id, features, profile, "
            f"toUnixTimestamp64Milli(created_at) FROM {settings.clickhouse_database}.references "
            "FINAL ORDER BY model, model_version")
        return [tuple(row) for row in result.result_rows]
    finally:
        await client.close()


async def test_store_sees_every_profile_and_follows_replacements(settings: Settings) -> None:
    v1, v2 = profile("fraud", "v1", seed=1), profile("fraud", "v2", seed=2)
    await publish_profiles(settings, [v1, v2])
    # Junk on the topic is skipped, not fatal: not JSON, not a profile, a key that lies,
    # histograms the worker could not use.
    doc = orjson.loads(profile("fraud", "v5", seed=5).to_json())
    doc["features"]["amount"]["counts"] = [1, 2]
    await produce_raw(settings, [(b"fraud/v3", b"not json"), (b"fraud/v4", b'{"model": 1}'),
                                 (b"fraud/v1", profile("fraud", "v9", seed=9).to_json()),
                                 (b"fraud/v5", orjson.dumps(doc))])

    async with ReferenceStore(settings, poll_timeout_ms=100) as store:
        async with asyncio.timeout(30):
            await store.wait_ready()
        assert store.get("fraud", "v1") == v1
        assert store.get("fraud", "v2") == v2
        assert store.get("fraud", "v3") is None
        assert store.get("fraud", "v5") is None
        assert set(store.profiles()) == {("fraud", "v1"), ("fraud", "v2")}

        newer = profile("fraud", "v1", seed=3, created_at_ms=T0 + 60_000)
        await publish_profiles(settings, [newer])
        await eventually(lambda: store.get("fraud", "v1") == newer)
        assert store.get("fraud", "v2") == v2

        await produce_raw(settings, [(b"fraud/v2", b"")])  # not a tombstone: skipped
        await asyncio.sleep(0.5)
        assert store.get("fraud", "v2") == v2

    rows = await live_rows(settings)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("fraud", "v1", "training", newer.profile_id, 3),
        ("fraud", "v2", "training", v2.profile_id, 3)]
    assert ReferenceProfile.from_json(rows[0][5]) == newer
    assert rows[0][6] == newer.created_at_ms


async def test_republishing_an_older_profile_rolls_back(settings: Settings) -> None:
    old, new = profile("churn", "v1", seed=4), profile("churn", "v1", seed=5, created_at_ms=T0 + 1)
    await publish_profiles(settings, [old])
    await publish_profiles(settings, [new])
    await publish_profiles(settings, [old])
    async with ReferenceStore(settings) as store:
        async with asyncio.timeout(30):
            await store.wait_ready()
        assert store.get("churn", "v1") == old
    assert [r[3] for r in await live_rows(settings)] == [old.profile_id]


async def test_store_on_an_empty_topic_is_ready_at_once(settings: Settings) -> None:
    store = ReferenceStore(settings)
    assert not store.ready
    await store.start()
    try:
        assert store.ready and len(store) == 0 and store.get("fraud", "v1") is None
        with pytest.raises(RuntimeError, match="already started"):
            await store.start()
        late = profile("late", "v1", seed=6)
        await publish_profiles(settings, [late])
        await eventually(lambda: store.get("late", "v1") == late)
        assert store.updates == 1
    finally:
        await store.stop()
    await store.stop()  # stopping twice is fine


async def test_tombstone_removes_a_profile(settings: Settings) -> None:
    gone = profile("gone", "v1", seed=7)
    await publish_profiles(settings, [gone])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.references_topic, None, key=gone.key)
    finally:
        await producer.stop()
    async with ReferenceStore(settings) as store:
        async with asyncio.timeout(30):
            await store.wait_ready()
        assert store.get("gone", "v1") is None


def test_publish_command(settings: Settings, tmp_path: Path) -> None:
    paths = []
    for version in ("v1", "v2"):
        path = tmp_path / f"{version}.json"
        path.write_bytes(profile("cli", version, seed=8).to_json())
        paths.append(path)
    text = io.StringIO()
    args = argparse.Namespace(files=paths)
    assert publish_command(args, settings, Console(file=text, width=200)) == 0
    assert text.getvalue().count("published cli/") == 2
    assert [r[1] for r in asyncio.run(live_rows(settings))] == ["v1", "v2"]

    (tmp_path / "bad.json").write_text('{"model": "x"}')
    with pytest.raises(ValueError, match="not a reference profile"):
        publish_command(argparse.Namespace(files=[tmp_path / "bad.json"]), settings,
                        Console(file=io.StringIO()))
