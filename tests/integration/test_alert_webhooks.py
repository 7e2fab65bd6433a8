"""Alerts to webhooks end to end: a worker on the embedded stack delivers each alert of its
alerts topic to a real local HTTP server (which fails at first, then recovers), signed, with
one idempotency key per alert and state, and to a Slack-shaped target."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from stranger import PostServer, read_alerts

from driftline import ModelVersion, publish_model_version
from driftline.streams.settings import Settings
from driftline.streams.worker.process import WorkerProcess

pytestmark = pytest.mark.integration

W = 60_000
T0 = 1_764_230_400_000
SECRET = "s3cret"


class Receiver:
    """Records every POST to a local server and answers 503 to the first ``failures``."""

    def __init__(self, failures: int) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        self.failures = failures
        self.http = PostServer(self.answer)
        self.url = self.http.url

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        status = 503 if self.failures > 0 else 200
        self.failures -= 1
        self.requests.append((path, headers, body, status))
        return status

    def delivered(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b, status in self.requests if p == path and status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    with r.http:
        yield r


@pytest.fixture
def settings(worker_settings: Callable[..., Settings], receiver: Receiver) -> Settings:
    targets = [{"url": f"{receiver.url}/json", "secret": SECRET},
               {"url": f"{receiver.url}/slack", "format": "slack", "states": ["open"]}]
    return worker_settings(reference_wait_seconds=5.0, webhooks=orjson.dumps(targets).decode(),
                           webhook_attempts=6)


async def send_windows(settings: Settings, windows: range) -> None:
    rng = np.random.default_rng(1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for w in windows:
            times = np.sort(T0 + w * W + rng.integers(0, W, 200)).tolist()
            await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
                {"type": "prediction_batch", "model": "m", "version": "v9",
                 "request_id": [f"{w}-{i}" for i in range(200)], "event_time": times,
                 "features": {"x": rng.random(200).tolist()}}), key=b"m")
        await producer.send_and_wait(settings.predictions_topic, orjson.dumps(
            {"type": "watermark", "model": "m", "event_time": T0 + (windows[-1] + 2) * W}),
            key=b"m")
    finally:
        await producer.stop()


def test_alerts_reach_webhooks_signed_once_per_key_after_the_server_recovers(
        settings: Settings, receiver: Receiver, tmp_path: Path) -> None:
    # v1 is registered and v9 is not: v9's predictions open an incident at once.
    asyncio.run(publish_model_version(settings, ModelVersion("m", "v1", T0 - 86_400_000)))
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        asyncio.run(send_windows(settings, range(0, 4)))
        alerts = asyncio.run(read_alerts(settings, worker, lambda got: any(
            a["state"] == "open" for a in got), wait_seconds=90))
        deadline = time.monotonic() + 60
        while (len(receiver.delivered("/json")) < len(alerts)
               and time.monotonic() < deadline):
            time.sleep(0.5)
        time.sleep(2)  # anything else on its way
    finally:
        worker.stop()
    keys = {f"{a['id']}:{a['state']}" for a in alerts}
    delivered = receiver.delivered("/json")
    assert {h["Idempotency-Key"] for h, _ in delivered} == keys
    assert len(delivered) == len(keys)  # each key delivered once
    failed = [r for r in receiver.requests if r[3] == 503]
    assert len(failed) == 2 and {r[1]["Idempotency-Key"] for r in failed} <= keys
    for sent, body in delivered:
        stamp = sent["X-Driftline-Timestamp"]
        mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        assert sent["X-Driftline-Signature"] == f"sha256={mac.hexdigest()}"
        assert abs(int(stamp) - time.time()) < 300
        assert orjson.loads(body) in alerts  # the alert document itself
    slack = receiver.delivered("/slack")
    opened = [a for a in alerts if a["state"] == "open"]
    assert [orjson.loads(b)["text"] for _, b in slack] == [
        f":rotating_light: *OPEN {a['severity']}* {a['summary']}" for a in opened]
