"""The whole embedded infrastructure: a tansu broker and a ClickHouse server side by side.

Layout under ``root_dir``: ``broker/tansu.log`` and ``clickhouse/`` (ClickHouse's data,
kept between runs; the broker keeps nothing).

Usage::

    with EmbeddedStack(".driftline") as stack:
        settings = Settings.from_env().replace(**stack.settings_overrides())
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self

from driftline.streams.embedded.broker import EmbeddedBroker
from driftline.streams.embedded.clickhouse import EmbeddedClickHouse

__all__ = ["EmbeddedStack"]


class EmbeddedStack:
    """An :class:`EmbeddedBroker` and an :class:`EmbeddedClickHouse` started and stopped together.

    Parameters
    ----------
    root_dir
        Directory holding the broker's log and ClickHouse's data.
    kafka_port, clickhouse_port
        Ports on 127.0.0.1; ``None`` picks free ones.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        kafka_port: int | None = None,
        clickhouse_port: int | None = None,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.broker = EmbeddedBroker(self.root_dir / "broker", kafka_port)
        self.clickhouse = EmbeddedClickHouse(self.root_dir / "clickhouse", clickhouse_port)

    def start(self, timeout: float = 60.0) -> Self:
        """Start both servers and wait for both; if either fails, stop both and re-raise."""
        try:
            # Both spawn from this thread (their parent-death signal is tied to it) and come
            # up concurrently: the total is ClickHouse's start-up, not the sum.
            self.broker.launch()
            self.clickhouse.launch()
            self.broker.wait_ready(timeout)
            self.clickhouse.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers; safe to repeat."""
        try:
            self.broker.stop()
        finally:
            self.clickhouse.stop()

    def settings_overrides(self) -> dict[str, str]:
        """What ``Settings.replace(**...)`` needs to point driftline at this stack."""
        return {
            "kafka_bootstrap": self.broker.bootstrap,
            "broker_flavor": "tansu",
            "clickhouse_url": self.clickhouse.url,
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedStack({self.broker!r}, {self.clickhouse!r})"
