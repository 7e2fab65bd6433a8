"""Alerts as webhook requests: which alerts a target wants, the body it gets, how it is signed.

Targets come from one JSON array (``DRIFTLINE_WEBHOOKS``)::

    [{"url": "https://hooks.example.com/driftline", "secret": "s3cret"},
     {"url": "https://hooks.slack.com/services/T/B/X", "format": "slack",
      "min_severity": "critical", "categories": ["drift", "performance"]}]

* ``format``: ``json`` (default: the alert document itself, as on the alerts topic),
  ``slack`` (``{"text": ...}``, what a Slack incoming webhook takes) or ``airflow``
  (``{"dag_run_id": <idempotency key>, "conf": <document>}``, the body of Airflow's
  ``POST /api/v1/dags/{dag_id}/dagRuns``: a second run with the same id is refused);
* ``min_severity`` (``warning``), ``categories`` (all), ``states`` (open, escalated,
  resolved): which alerts it gets;
* ``secret``: when set, every request carries ``X-Driftline-Timestamp`` and
  ``X-Driftline-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<body>">``, so the receiver
  can check it came from driftline and is recent.

Every request carries ``Idempotency-Key: <alert id>:<state>``: the same for a retry and for
a replay after a crash, so a receiver that keeps the keys it has seen acts once.

>>> target = parse_targets('[{"url": "https://example.com/h", "secret": "k"}]')[0]
>>> target.format, target.min_severity
('json', 'warning')
>>> sign("k", 1764230400, b'{"a":1}')  # what the receiver recomputes with its copy of "k"
'sha256=b385ee0f351b3b55e84bc6fdb32edd7f07da2e7c9e97baaf376a91c3fefbcfc5'
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Literal, get_args

import orjson

from driftline.models.alerting.alerts import Alert, State

__all__ = ["WebhookError", "WebhookTarget", "alert_key", "body", "headers", "parse_targets",
           "render", "sign"]

Format = Literal["json", "slack", "airflow"]
_SEVERITY_RANK = {"warning": 1, "critical": 2}
_KEYS = {"url", "format", "secret", "min_severity", "categories", "states"}


class WebhookError(ValueError):
    """A webhook target that cannot be used; the text says why, in one line."""


@dataclasses.dataclass(frozen=True)
class WebhookTarget:
    url: str
    format: Format = "json"
    secret: str = dataclasses.field(default="", repr=False)
    min_severity: str = "warning"
    #: Alert categories (the dedup key's first part) it wants; empty: all.
    categories: tuple[str, ...] = ()
    states: tuple[State, ...] = ("open", "escalated", "resolved")

    def wants(self, alert: Alert) -> bool:
        category = alert.dedup_key.split(":", 1)[0]
        return (alert.state in self.states
                and _SEVERITY_RANK[alert.severity] >= _SEVERITY_RANK[self.min_severity]
                and (not self.categories or category in self.categories))


def parse_targets(text: str, where: str = "DRIFTLINE_WEBHOOKS") -> list[WebhookTarget]:
    """Targets from their JSON array (empty text: none); :class:`WebhookError` otherwise."""
    if not text.strip():
        return []
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise WebhookError(f'{where} must be a JSON array like [{{"url": "https://..."}}]') \
            from None
    if not isinstance(doc, list):
        raise WebhookError(f"{where} must be a JSON array of webhook objects")
    return [_target(f"{where}[{i}]", item) for i, item in enumerate(doc)]


def _target(where: str, item: Any) -> WebhookTarget:
    if not isinstance(item, dict):
        raise WebhookError(f"{where} must be an object with at least a url")
    unknown = item.keys() - _KEYS
    if unknown:
        raise WebhookError(f"{where} has unknown keys {sorted(unknown)}; use {sorted(_KEYS)}")
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise WebhookError(f"{where}.url must be an http:// or https:// URL")
    fmt = item.get("format", "json")
    if fmt not in get_args(Format):
        raise WebhookError(f"{where}.format must be one of {get_args(Format)}, got {fmt!r:.40}")
    severity = item.get("min_severity", "warning")
    if severity not in _SEVERITY_RANK:
        raise WebhookError(f"{where}.min_severity must be warning or critical")
    categories = _strings(where, "categories", item.get("categories", []))
    states = _strings(where, "states", item.get("states", ["open", "escalated", "resolved"]))
    if not set(states) <= set(get_args(State)):
        raise WebhookError(f"{where}.states must be among {get_args(State)}")
    secret = item.get("secret", "")
    if not isinstance(secret, str):
        raise WebhookError(f"{where}.secret must be a string")
    return WebhookTarget(url, fmt, secret, severity, categories, states)  # type: ignore[arg-type]


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebhookError(f"{where}.{key} must be a list of strings")
    return tuple(value)


def render(alert: Alert, target: WebhookTarget) -> bytes:
    """The request body of an alert for ``target``."""
    mark = {"open": ":rotating_light:", "escalated": ":red_circle:",
            "resolved": ":white_check_mark:"}[alert.state]
    return body(dataclasses.asdict(alert),
                f"{mark} *{alert.state.upper()} {alert.severity}* {alert.summary}",
                alert_key(alert), target)


def body(document: Mapping[str, Any], text: str, key: str, target: WebhookTarget) -> bytes:
    """``document`` in ``target``'s format: as it is, as Slack text, or as an Airflow DAG
    run whose id is the idempotency ``key``."""
    if target.format == "slack":
        return orjson.dumps({"text": text})
    if target.format == "airflow":
        return orjson.dumps({"dag_run_id": key, "conf": document, "note": text[:1000]})
    return orjson.dumps(document)


def alert_key(alert: Alert) -> str:
    return f"{alert.id}:{alert.state}"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``<timestamp>.<body>`` with ``secret``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def headers(key: str, target: WebhookTarget, payload: bytes,
            timestamp: int) -> dict[str, str]:
    """The request headers: the idempotency ``key``, and the signature where a secret is set."""
    out = {"Content-Type": "application/json", "Idempotency-Key": key,
           "User-Agent": "driftline-webhooks"}
    if target.secret:
        out["X-Driftline-Timestamp"] = str(timestamp)
        out["X-Driftline-Signature"] = sign(target.secret, timestamp, payload)
    return out
