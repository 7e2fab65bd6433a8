"""Stand-ins for Faust's events, topics and table in processor unit tests: they record what
a processor sends, and fail on request, so its retry and replay logic can be checked without
a broker. Integration tests run the same processors against the real ones."""

from __future__ import annotations

import asyncio
from typing import Any


class FakeMessage:
    def __init__(self, partition: int, offset: int, key: bytes, value: bytes,
                 topic: str = "telemetry") -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.key, self.value = key, value


class FakeEvent:
    def __init__(self, message: FakeMessage) -> None:
        self.message = message


class FakeTopic:
    def __init__(self, max_bytes: int | None = None) -> None:
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self.headers: list[dict[str, bytes]] = []
        self.max_bytes = max_bytes  # larger values are refused, like a broker's limit

    async def send(self, key: bytes | None = None, value: bytes | None = None,
                   headers: dict[str, bytes] | None = None, **_: Any) -> asyncio.Future[None]:
        if self.max_bytes is not None and len(value or b"") > self.max_bytes:
            from aiokafka.errors import MessageSizeTooLargeError

            raise MessageSizeTooLargeError(f"{len(value or b'')} bytes")
        self.sent.append((key, value))
        self.headers.append(headers or {})
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FakeTable:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.changelog.append((partition, key))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future
