"""The alert event: one JSON document on the alerts topic (keyed by model) and one row in
the ClickHouse ``alerts`` table, described by ``models/schemas/alert.json``.

An incident emits ``open`` once, at most one ``escalated`` (warning became critical) and
``resolved`` once, all with the same ``id``. Ids are deterministic, so a replay after a
crash re-emits identical events: consumers deduplicate by ``(id, state)``.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Any, Literal, Self, get_args

import orjson

from driftline.models.alerting.rules import Severity

__all__ = ["Alert", "State", "alert_id"]

State = Literal["open", "escalated", "resolved"]
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://driftline.dev/alerts")


def alert_id(dedup_key: str, first_seen: int) -> str:
    """The incident's id: a UUID5 of its dedup key and the start of its first bad window.

    Examples
    --------
    >>> alert_id("drift:fraud-detector:2:amount:psi", 1764235740000)
    'dea12d7f-a6bc-5610-8bb9-e0e5946dfc4c'
    """
    return str(uuid.uuid5(_NAMESPACE, f"{dedup_key}@{first_seen}"))


@dataclasses.dataclass(frozen=True)
class Alert:
    """One state change of one incident.

    ``value`` and ``threshold`` are those of the window that caused the change (for a
    p-value metric: the test statistic and the FDR level q). Times are UTC epoch
    milliseconds: ``first_seen`` the start of the first bad window, ``last_seen`` the end
    of the latest bad one.

    Examples
    --------
    >>> a = Alert(alert_id("drift:fraud-detector:2:amount:psi", 1764235740000),
    ...           "drift:fraud-detector:2:amount:psi", "open", "critical",
    ...           "fraud-detector", "2", "amount", "psi", 0.41, 0.25,
    ...           1764235800000, 1764235860000, 1764235740000, 1764235860000,
    ...           "fraud-detector v2: feature 'amount' drifted (psi 0.41 ≥ critical 0.25) "
    ...           "for 2 windows since 2025-11-27 09:29 UTC")
    >>> a.key
    b'fraud-detector'
    >>> Alert.from_json(a.to_json()) == a
    True
    >>> orjson.loads(a.to_json())["state"]
    'open'
    """

    id: str
    dedup_key: str
    state: State
    severity: Severity
    model: str
    version: str
    feature: str
    metric: str
    value: float
    threshold: float
    window_start: int
    window_end: int
    first_seen: int
    last_seen: int
    summary: str

    def __post_init__(self) -> None:
        if self.state not in get_args(State):
            raise ValueError(f"alert state must be one of {get_args(State)}, "
                             f"got {self.state!r:.80}")
        if self.severity not in get_args(Severity):
            raise ValueError(f"alert severity must be one of {get_args(Severity)}, "
                             f"got {self.severity!r:.80}")
        if not (math.isfinite(self.value) and math.isfinite(self.threshold)):
            raise ValueError("alert value and threshold must be finite (JSON has no NaN)")

    @property
    def key(self) -> bytes:
        """The Kafka message key: the model name, so one model's alerts stay in order."""
        return self.model.encode()

    def to_json(self) -> bytes:
        """The alert document, fields in declaration order."""
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Parse :meth:`to_json` output; :class:`ValueError` for anything else."""
        doc = orjson.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("an alert is a JSON object")
        missing = _TYPES.keys() - doc.keys()
        extra = doc.keys() - _TYPES.keys()
        if missing or extra:
            raise ValueError(f"alert fields: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)!r:.80}")
        return cls(**{name: _typed(name, kind, doc[name]) for name, kind in _TYPES.items()})


_TYPES: dict[str, str] = {f.name: str(f.type) for f in dataclasses.fields(Alert)}


def _typed(name: str, kind: str, value: Any) -> Any:
    if kind == "int" and type(value) is int:
        return value
    if kind == "float" and type(value) in (int, float):
        return float(value)
    if kind not in ("int", "float") and isinstance(value, str):
        return value
    raise ValueError(f"alert field {name!r} has the wrong type: {value!r:.80}")
