"""Child-process plumbing shared by the embedded servers: ports, spawning, waiting, stopping.

Every child is started in its own session, so a Ctrl-C in the terminal reaches only the
Python parent, which then stops the child itself rather than racing it. On Linux the child
also asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to be signalled when its parent dies, so
a parent killed with SIGKILL leaves no orphan server behind. The kernel ties that signal to
the *thread* that spawned the child: spawn from a thread that lives as long as the server.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from driftline.streams.embedded.errors import EmbeddedStartError

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Outcome = Literal["ready", "exited", "timeout"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(port: int, option: str) -> None:
    """Raise a one-line :class:`EmbeddedStartError` if ``127.0.0.1:port`` cannot be bound."""
    with socket.socket() as sock:
        # The servers set SO_REUSEADDR too: a TIME_WAIT leftover is no obstacle, a listener is.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use(port, option) from None
            raise EmbeddedStartError(
                f"cannot listen on 127.0.0.1:{port} ({exc.strerror}): pick another port "
                f"with {option}"
            ) from None


def port_in_use(port: int, option: str) -> EmbeddedStartError:
    """The error for a port someone else listens on."""
    return EmbeddedStartError(
        f"127.0.0.1:{port} is already in use: pick another port with {option} or stop what holds it"
    )


def spawn(
    argv: Sequence[str],
    log_path: Path,
    death_signal: signal.Signals,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, stdout and stderr going to a fresh ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,
            # Safe despite threads: the hook only makes two syscalls, it takes no locks.
            preexec_fn=_die_with_parent(death_signal),
        )


def _die_with_parent(death_signal: signal.Signals) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, not after fork: the child must not load libraries before exec.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(death_signal))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def wait_ready(proc: subprocess.Popen[bytes], probe: Callable[[], bool], timeout: float) -> Outcome:
    """Poll ``probe`` until it answers True, the process exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return "exited"
        if probe():
            # A probe can be answered by someone else on a raced port: the child must be alive.
            return "ready" if proc.poll() is None else "exited"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(0.05)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM this one process, wait up to ``grace`` seconds, then SIGKILL it and reap it.

    ``Popen`` remembers a reaped child, so a recycled PID is never signalled.
    """
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 4) -> str:
    """The last non-blank lines of a log, colour codes removed, joined into one line."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in _ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(empty log)"


class ChildServer:
    """Lifecycle shared by the embedded servers: ``launch`` + ``wait_ready`` = ``start``.

    A server that fails to become ready, or a start interrupted by Ctrl-C, is stopped again,
    so no half-started child outlives the error. Subclasses define the three steps.
    """

    #: Seconds :meth:`start` waits for readiness unless told otherwise.
    start_timeout = 10.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running server, ``None`` when stopped."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float | None = None) -> Self:
        """Start the server and wait until it answers; no-op if running."""
        if self._proc is None:
            self.launch()
            try:
                self.wait_ready(self.start_timeout if timeout is None else timeout)
            except BaseException:  # Ctrl-C included: a half-started server is stopped too
                self.stop()
                raise
        return self

    def launch(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
