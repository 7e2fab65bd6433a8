"""Key tables and value checks for rules files: one-line errors naming the key and the fix."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["INCIDENT_KEYS", "METRIC_KEYS", "SETTINGS", "RulesError", "check", "quoted", "table"]


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the key and the fix."""

    __module__ = "driftline.models.alerting.rules"  # its public home, re-exported there


SETTINGS = ("min_windows", "min_count", "fdr_q")
#: A metric may set min_windows/min_count too (telemetry counts samples, not events), and
#: fdr_q (a test judged every window against one baseline wants a stricter level).
METRIC_KEYS = ("kind", "direction", "warn", "critical", "effect_metric", "effect_floor",
               "enabled", "category", "min_windows", "min_count", "fdr_q")
INCIDENT_KEYS = ("open_after", "resolve_after", "cooldown_windows")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def quoted(name: str) -> str:
    """A table or key name as TOML writes it, for error messages."""
    return name if _BARE_KEY.fullmatch(name) else '"' + name.replace('"', '\\"') + '"'


def table(where: str, value: Any, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``value`` as a dict with string keys, all in ``allowed`` unless that is None."""
    if not isinstance(value, Mapping):
        raise RulesError(f"{where or 'the document'}: expected a table, "
                         f"got {type(value).__name__}")
    prefix = f"{where}." if where else ""
    for k in value:
        if not isinstance(k, str) or not k:
            raise RulesError(f"{prefix}{k!r}: keys must be non-empty strings")
        if allowed is not None and k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = (f"did you mean {close[0]!r}?" if close
                    else f"expected one of {', '.join(allowed)}")
            raise RulesError(f"{prefix}{quoted(k)}: unknown key; {hint}")
    return dict(value)


def _number(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise RulesError(f"{where}: expected a finite number, got {v!r}; write e.g. 0.2")
    return float(v)


def _integer(minimum: int) -> Callable[[str, Any], int]:
    def checked(where: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise RulesError(f"{where}: expected a whole number >= {minimum}, got {v!r}")
        return v
    return checked


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def checked(where: str, v: Any) -> str:
        if v not in choices:
            raise RulesError(f"{where}: expected one of {', '.join(map(repr, choices))}, got {v!r}")
        return str(v)
    return checked


def _name(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v or ":" in v:
        raise RulesError(f"{where}: expected a non-empty name without ':', got {v!r}")
    return v


def _flag(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RulesError(f"{where}: expected true or false, got {v!r}")
    return v


def _q(where: str, v: Any) -> float:
    q = _number(where, v)
    if not 0.0 < q <= 1.0:
        raise RulesError(f"{where}: a false discovery rate lies in (0, 1], got {v!r}; e.g. 0.05")
    return q


def _floor(where: str, v: Any) -> float:
    floor = _number(where, v)
    if floor < 0.0:
        raise RulesError(f"{where}: an effect floor is >= 0, got {v!r}")
    return floor


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "min_windows": _integer(0), "min_count": _integer(0), "fdr_q": _q,
    "kind": _choice("threshold", "test"), "direction": _choice("above", "below"),
    "warn": _number, "critical": _number, "effect_metric": _name, "effect_floor": _floor,
    "enabled": _flag, "category": _name,
    "open_after": _integer(1), "resolve_after": _integer(1), "cooldown_windows": _integer(0),
}


def check(where: str, key: str, value: Any) -> Any:
    """``value`` of setting ``key`` (at ``where``), checked and normalised."""
    return _CHECKS[key](where, value)
