"""The one error the embedded servers raise when they cannot start."""

from __future__ import annotations

__all__ = ["EmbeddedStartError"]


class EmbeddedStartError(RuntimeError):
    """An embedded server did not start; the one-line message says what to do about it."""
