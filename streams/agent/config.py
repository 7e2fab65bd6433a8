"""The agent's settings, parsed and checked once, with errors that name the variable to fix.

>>> config = AgentConfig.from_settings(Settings(agent_host="gpu-07", agent_pids="12, 34"))
>>> config.host, config.pids, config.interval_seconds
('gpu-07', (12, 34), 5.0)
"""

from __future__ import annotations

import dataclasses
import re
import socket

from driftline.models.events.wire import MAX_NAME_LENGTH
from driftline.streams.settings import Settings

__all__ = ["AgentConfig"]


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The agent's part of :class:`Settings`, parsed and checked."""

    host: str
    topic: str
    interval_seconds: float
    buffer: int
    pids: tuple[int, ...]
    process_pattern: str | None
    models: tuple[str, ...]
    model_arg_pattern: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentConfig:
        """Raises ValueError, naming the variable to fix, for settings that cannot work."""
        if not settings.agent_interval_seconds > 0:
            raise ValueError("DRIFTLINE_AGENT_INTERVAL_SECONDS must be positive, "
                             f"got {settings.agent_interval_seconds}")
        if settings.agent_buffer < 1:
            raise ValueError(f"DRIFTLINE_AGENT_BUFFER must be at least 1, got "
                             f"{settings.agent_buffer}")
        host = settings.agent_host or socket.gethostname()
        if not 0 < len(host) <= MAX_NAME_LENGTH:
            raise ValueError(f"host name {host!r:.40} must be 1 to {MAX_NAME_LENGTH} "
                             "characters: set DRIFTLINE_AGENT_HOST")
        try:
            pids = tuple(int(pid) for pid in _items(settings.agent_pids))
        except ValueError:
            raise ValueError(f"DRIFTLINE_AGENT_PIDS={settings.agent_pids!r} must be "
                             "comma-separated process IDs, e.g. 4242,4243") from None
        for var, pattern in (("PROCESS_PATTERN", settings.agent_process_pattern),
                             ("MODEL_ARG_PATTERN", settings.agent_model_arg_pattern)):
            try:
                re.compile(pattern or "")
            except re.error as exc:
                raise ValueError(f"DRIFTLINE_AGENT_{var}={pattern!r} is not a valid regular "
                                 f"expression: {exc}") from None
        models = tuple(_items(settings.agent_models))
        if any(len(model) > MAX_NAME_LENGTH for model in models):
            raise ValueError(f"DRIFTLINE_AGENT_MODELS: model names are at most "
                             f"{MAX_NAME_LENGTH} characters")
        return cls(host=host, topic=settings.telemetry_topic,
                   interval_seconds=settings.agent_interval_seconds,
                   buffer=settings.agent_buffer, pids=pids,
                   process_pattern=settings.agent_process_pattern or None, models=models,
                   model_arg_pattern=settings.agent_model_arg_pattern or None)

def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
