"""A real ClickHouse 26.9 HTTP server from chdb-core, run as a child process.

The server keeps its data in ``data_dir``, so tables survive a stop and a start. One data
directory belongs to one server at a time; everything else talks to that server over HTTP
(clickhouse-connect ``get_client(dsn=url)``). No users or passwords are set up: development
and tests only.

Usage::

    with EmbeddedClickHouse(data_dir) as clickhouse:
        client = clickhouse_connect.get_client(dsn=clickhouse.url)
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

from driftline.streams.embedded import _clickhouse_server as server
from driftline.streams.embedded import _process
from driftline.streams.embedded.errors import EmbeddedStartError

__all__ = ["EmbeddedClickHouse"]

#: The knobs that move the port and the data directory, as the CLI spells them.
_PORT_OPTION = "--clickhouse-port"
_DIR_OPTION = "--home"
_MISSING = "chdb is missing: pip install chdb-core==26.9.0"
#: Config, control FIFO and log live here, inside the data directory, out of ClickHouse's way.
_WORK_DIR_NAME = "driftline-server"


class EmbeddedClickHouse(_process.ChildServer):
    """A ClickHouse HTTP server on ``127.0.0.1:port`` storing its data in ``data_dir``.

    Parameters
    ----------
    data_dir
        ClickHouse's data directory, created if missing and kept after :meth:`stop`.
    port
        HTTP port on 127.0.0.1; ``None`` picks a free one now, kept across restarts.
    """

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).resolve()  # absolute: the server chdirs elsewhere
        self.port = _process.free_port() if port is None else port

    @property
    def url(self) -> str:
        """The HTTP endpoint, ``"http://127.0.0.1:PORT"``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def work_dir(self) -> Path:
        """The server's config, control FIFO, lock file and log."""
        return self.data_dir / _WORK_DIR_NAME

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr, rewritten at each start."""
        return self.work_dir / "server.log"

    #: Importing chdb alone takes a while on a busy machine.
    start_timeout = 60.0

    def launch(self) -> None:
        """Spawn the server without waiting for it (see :meth:`wait_ready`)."""
        if self._proc is not None:
            return
        if importlib.util.find_spec("chdb") is None:
            raise EmbeddedStartError(_MISSING)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        lock = self._lock_data_dir()
        try:
            _process.ensure_port_free(self.port, _PORT_OPTION)
            argv = [
                sys.executable,
                "-m",
                server.__name__,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--work-dir",
                str(self.work_dir),
            ]
            # SIGTERM on parent death; ClickHouse parts are written atomically, so even the
            # SIGKILL fallback in stop() loses nothing that an INSERT had acknowledged.
            self._proc = _process.spawn(argv, self.log_path, signal.SIGTERM, pass_fds=[lock])
        finally:
            os.close(lock)  # the child's inherited copy now holds the lock, until it dies

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the launched server answers ``/ping`` (importing chdb takes a while)."""
        if self._proc is None:
            raise RuntimeError("wait_ready() before launch()")
        outcome = _process.wait_ready(self._proc, self._pings, timeout)
        if outcome == "ready":
            return
        code = self._proc.poll()
        self.stop()
        tail = _process.log_tail(self.log_path)
        if code == server.EXIT_NO_CHDB:
            raise EmbeddedStartError(_MISSING)
        if "Cannot lock file" in tail:  # a server started by something other than driftline
            raise self._dir_in_use()
        if outcome == "exited":
            raise EmbeddedStartError(
                f"the ClickHouse server exited with code {code} before "
                f"it was ready: {tail} (log: {self.log_path})"
            )
        raise EmbeddedStartError(
            f"the ClickHouse server did not answer {self.url}/ping within "
            f"{timeout:g} s: {tail} (log: {self.log_path})"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server this object started, data kept; safe to repeat.

        Asks through the control FIFO first, then falls back to SIGTERM and SIGKILL. A
        graceful stop waits (~5 s at most) for idle keep-alive HTTP connections, such as
        those of clickhouse-connect's shared pool; clients made with ``dedicated_pool=True``
        and closed leave none.
        """
        if self._proc is None:
            return
        if self._proc.poll() is None and self._ask_to_stop():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
        _process.terminate(self._proc, grace=5.0)
        self._proc = None

    def _lock_data_dir(self) -> int:
        """An fd holding an exclusive lock on the data directory, or a one-line error.

        ClickHouse locks the directory too, but only after a second server has already
        overwritten the first one's config, control FIFO and log; this lock comes first.
        """
        fd = os.open(self.work_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._dir_in_use() from None
        return fd

    def _dir_in_use(self) -> EmbeddedStartError:
        return EmbeddedStartError(
            f"the ClickHouse data directory {self.data_dir} is in use by another driftline "
            f"server: stop it or pick another {_DIR_OPTION}"
        )

    def _ask_to_stop(self) -> bool:
        try:
            # Non-blocking: with no reader (server not serving yet) this fails, never hangs.
            fd = os.open(self.work_dir / server.FIFO_NAME, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            os.write(fd, b"stop\n")
        finally:
            os.close(fd)
        return True

    def _pings(self) -> bool:
        # http.client rather than urllib: no *_proxy variable may reroute a loopback probe.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            connection.request("GET", "/ping")
            return connection.getresponse().read() == b"Ok.\n"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self._proc is not None else "stopped"
        return f"EmbeddedClickHouse({self.url}, {self.data_dir}, {state})"
