"""Alert webhooks: which alerts a target takes, the bodies and signatures, and delivery to a
real local HTTP server that fails, then recovers (retried, then delivered once per key)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from driftline.models.alerting.alerts import Alert, alert_id
from driftline.models.alerting.webhooks import (
    WebhookError,
    WebhookTarget,
    headers,
    parse_targets,
    render,
)
from driftline.streams.worker.webhooks import WebhookSender

KEY = "drift:fraud:v2:amount"


def alert(state: str = "open", severity: str = "critical", key: str = KEY) -> Alert:
    return Alert(alert_id(key, 0), key, state, severity, "fraud", "v2",  # type: ignore[arg-type]
                 "amount", "psi", 0.41, 0.25, 0, 60_000, 0, 60_000,
                 "fraud v2: feature 'amount' drifted (psi 0.41 ≥ critical 0.25)")


def test_targets_are_parsed_and_checked_with_one_line_errors() -> None:
    (plain, slack) = parse_targets('[{"url": "https://a.example/h", "secret": "s3cret"}, '
                                   '{"url": "http://b.example/s", "format": "slack", '
                                   '"min_severity": "critical", "categories": ["drift"], '
                                   '"states": ["open"]}]')
    assert (plain.format, plain.secret, slack.states) == ("json", "s3cret", ("open",))
    assert "s3cret" not in repr(plain)  # secrets stay out of logs
    assert parse_targets("") == []
    for text, message in [("{}", "JSON array"), ("[1]", "object"),
                          ('[{"url": "ftp://x"}]', "http:// or https://"),
                          ('[{"url": "http://x", "format": "xml"}]', "format"),
                          ('[{"url": "http://x", "min_severity": "info"}]', "min_severity"),
                          ('[{"url": "http://x", "states": ["gone"]}]', "states"),
                          ('[{"url": "http://x", "retries": 3}]', "unknown keys")]:
        with pytest.raises(WebhookError, match=message):
            parse_targets(text)


def test_a_target_takes_the_alerts_it_asks_for() -> None:
    target = WebhookTarget("http://x", min_severity="critical", categories=("drift",),
                           states=("open", "resolved"))
    assert target.wants(alert())
    assert not target.wants(alert(severity="warning"))
    assert not target.wants(alert(state="escalated"))
    assert not target.wants(alert(key="performance:fraud:v2:quality"))


def test_bodies_and_signed_headers() -> None:
    a = alert()
    assert orjson.loads(render(a, WebhookTarget("http://x"))) == orjson.loads(a.to_json())
    slack = orjson.loads(render(a, WebhookTarget("http://x", format="slack")))
    assert slack == {"text": f":rotating_light: *OPEN critical* {a.summary}"}
    body = render(a, WebhookTarget("http://x"))
    sent = headers(f"{a.id}:open", WebhookTarget("http://x", secret="k"), body, 1_764_230_400)
    expected = hmac.new(b"k", b"1764230400." + body, hashlib.sha256).hexdigest()
    assert sent["X-Driftline-Signature"] == f"sha256={expected}"
    assert sent["Idempotency-Key"] == f"{a.id}:open"
    assert "X-Driftline-Signature" not in headers("k", WebhookTarget("http://x"), body, 1)
    airflow = orjson.loads(render(a, WebhookTarget("http://x", format="airflow")))
    assert airflow["dag_run_id"] == f"{a.id}:open" and airflow["conf"]["id"] == a.id


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request], list[int]]]:
    """A local HTTP server answering with the statuses queued in ``plan`` (then 200)."""
    seen: list[web.Request] = []
    plan: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        return web.Response(status=plan.pop(0) if plan else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", seen, plan
    await runner.cleanup()


async def test_a_failing_server_is_retried_until_it_recovers(
        server: tuple[str, list[web.Request], list[int]]) -> None:
    url, seen, plan = server
    plan += [503, 500, 429]
    sender = WebhookSender([WebhookTarget(url, secret="k")], attempts=5, first_pause=0.01)
    await sender.deliver(alert())
    await sender.close()
    assert len(seen) == 4 and sender.stats.as_dict() == {"delivered": 1, "retries": 3,
                                                          "failed": 0}
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1  # one key for every try


async def test_a_conflict_is_delivered_a_bad_request_is_final_and_silence_gives_up(
        server: tuple[str, list[web.Request], list[int]]) -> None:
    url, seen, plan = server
    plan += [409, 400]
    # Two requests, none retried: both answers are final.
    sender = WebhookSender([WebhookTarget(url)], attempts=3, first_pause=0.01)
    await sender.deliver(alert())  # 409: the receiver already had this key
    await sender.deliver(alert(state="resolved"))  # 400: retrying cannot help
    assert sender.stats.as_dict() == {"delivered": 1, "retries": 0, "failed": 1}
    assert len(seen) == 2
    nobody = WebhookSender([WebhookTarget("http://127.0.0.1:9/hook")], attempts=3,
                           first_pause=0.01, timeout=1.0)
    await nobody.deliver(alert())
    await sender.close()
    await nobody.close()
    assert nobody.stats.as_dict() == {"delivered": 0, "retries": 2, "failed": 1}
