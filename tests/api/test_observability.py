"""What an operator observes: access lines, request ids through workflows, JSON
logs, Prometheus metrics, health and readiness, login throttling."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.logconfig import JsonFormatter
from tests.conftest import Account
from tests.servers.common import unused_tcp_port


@pytest.fixture
def metrics_token(settings: Settings) -> Iterator[str]:
    previous = settings.metrics_token
    settings.metrics_token = "metrics-token-for-tests"
    yield settings.metrics_token
    settings.metrics_token = previous


async def _scrape(client: httpx.AsyncClient, token: str) -> str:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_one_access_line_per_request_with_its_fields(
    client: httpx.AsyncClient, owner: Account, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = await client.get(
            "/v1/users/me", headers={**owner.headers, "x-request-id": "trace-access-1"}
        )
    assert response.status_code == 200
    access = [r for r in caplog.records if r.name == "mailfleet.access"]
    assert len(access) == 1
    record = access[0]
    assert (record.method, record.path, record.status) == ("GET", "/v1/users/me", 200)  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.request_id == "trace-access-1"  # type: ignore[attr-defined]
    assert "GET /v1/users/me 200" in record.getMessage()


async def test_request_id_reaches_the_workflows_it_starts(
    client: httpx.AsyncClient,
    owner: Account,
    caplog: pytest.LogCaptureFixture,
    metrics_token: str,
) -> None:
    """A mailbox whose server refuses: the verification workflow's lines carry
    the id of the request that created it, and the outcome is counted by code."""
    before = _sample(
        await _scrape(client, metrics_token),
        "mailfleet_mailbox_verifications_total",
        code="CONNECTION_REFUSED",
    )
    closed_port = unused_tcp_port()
    body = {
        "email": "traced@example.test",
        "smtp": {"host": "127.0.0.1", "port": closed_port, "password": "x", "secure": False},
    }
    with caplog.at_level(logging.INFO):
        created = await client.post(
            "/v1/mailboxes", json=body, headers={**owner.headers, "x-request-id": "trace-wf-1"}
        )
        assert created.status_code == 201, created.text
        mailbox_id = created.json()["data"]["_id"]
        for _ in range(300):
            test = await client.get(
                f"/v1/mailboxes/{mailbox_id}/connection-test", headers=owner.headers
            )
            if test.json()["data"]["status"] != "pending":
                break
            await asyncio.sleep(0.1)
    assert test.json()["data"]["status"] == "failed"
    in_workflow = [r for r in caplog.records if getattr(r, "workflow_id", None)]
    finished = [r for r in in_workflow if r.getMessage().startswith("connection test ")]
    assert finished, [r.getMessage() for r in caplog.records]
    assert finished[0].request_id == "trace-wf-1"  # type: ignore[attr-defined]
    enqueued = [r for r in caplog.records if "enqueued workflow" in r.getMessage()]
    assert enqueued[0].request_id == "trace-wf-1"  # type: ignore[attr-defined]
    assert finished[0].workflow_id in enqueued[0].getMessage()  # type: ignore[attr-defined]
    after = _sample(
        await _scrape(client, metrics_token),
        "mailfleet_mailbox_verifications_total",
        code="CONNECTION_REFUSED",
    )
    assert after == before + 1


async def test_json_log_lines(client: httpx.AsyncClient, owner: Account) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        await client.get("/v1/workspaces", headers={**owner.headers, "x-request-id": "json-1"})
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "mailfleet.access"]
    assert len(access) == 1
    entry = access[0]
    assert entry["method"] == "GET"
    assert entry["path"] == "/v1/workspaces"
    assert entry["status"] == 200
    assert entry["request_id"] == "json-1"
    assert isinstance(entry["duration_ms"], float)
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")
    assert owner.api_key not in stream.getvalue()


def test_log_format_setting() -> None:
    assert Settings(log_format="JSON").log_format == "json"
    with pytest.raises(ValueError, match="log_format"):
        Settings(log_format="xml")


async def test_metrics_are_off_without_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 404


async def test_metrics_need_the_token_and_name_route_templates(
    client: httpx.AsyncClient, owner: Account, held_mailbox: object, metrics_token: str
) -> None:
    refused = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert (await client.get("/metrics")).status_code == 401
    missing = await client.get("/v1/mailboxes/mbx_nothing", headers=owner.headers)
    assert missing.status_code == 404
    await client.get("/no/such/route/123")
    text = await _scrape(client, metrics_token)
    labels = {"method": "GET", "route": "/v1/mailboxes/{mailbox_id}", "status": "404"}
    assert _sample(text, "mailfleet_http_requests_total", **labels) >= 1
    assert "mbx_nothing" not in text, "ids never become label values"
    assert (
        _sample(
            text, "mailfleet_http_requests_total", method="GET", route="unmatched", status="404"
        )
        >= 1
    )
    assert "/no/such/route" not in text
    assert (
        _sample(
            text,
            "mailfleet_http_request_duration_seconds_count",
            method="GET",
            route="/v1/mailboxes/{mailbox_id}",
        )
        >= 1
    )
    # Every declared queue has a depth, zero included.
    for queue in ("mailbox_verification", "webhook_delivery", "bulk_connect", "platform_export"):
        assert f'mailfleet_queue_workflows{{queue="{queue}",state="enqueued"}}' in text


async def test_liveness_touches_nothing_and_readiness_checks_both(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    live = await client.get("/v1/health")
    assert live.status_code == 200
    ready = await client.get("/v1/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["data"] | {"version": None} == {
        "status": "ready",
        "database": "ok",
        "jobEngine": "ok",
        "version": None,
    }
    # A database that does not answer: not ready (503), while still alive.
    working: Database = app.state.database
    unreachable = Database(f"postgresql://mailfleet@127.0.0.1:{unused_tcp_port()}/none")
    app.state.database = unreachable
    try:
        down = await client.get("/v1/health/ready")
        alive = await client.get("/v1/health")
    finally:
        app.state.database = working
        await unreachable.dispose()
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["code"] == "NOT_READY"
    assert error["database"] == "unavailable"
    assert error["jobEngine"] == "ok"
    assert alive.status_code == 200


async def test_login_throttled_per_account_then_per_address(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    limits = (settings.login_max_failures_per_account, settings.login_max_failures_per_address)
    settings.login_max_failures_per_account = 3
    settings.login_max_failures_per_address = 5
    try:
        wrong = {"email": owner.email, "password": "wrong-password"}
        for _ in range(3):
            assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
        right = {"email": owner.email, "password": owner.password}
        throttled = await client.post("/v1/auth/login", json=right)
        assert throttled.status_code == 429, "even the right password waits"
        assert throttled.json()["error"]["code"] == "RATE_LIMITED"
        retry_after = int(throttled.headers["retry-after"])
        assert 1 <= retry_after <= settings.login_failure_window
        # Another account from the same address: two more failures reach the
        # address's limit of five, and then every account waits.
        other = {"email": "someone-else@example.test", "password": "guess"}
        for _ in range(2):
            assert (await client.post("/v1/auth/login", json=other)).status_code == 401
        assert (await client.post("/v1/auth/login", json=other)).status_code == 429
    finally:
        settings.login_max_failures_per_account, settings.login_max_failures_per_address = limits


async def test_a_right_password_clears_the_account_count(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    limit = settings.login_max_failures_per_account
    settings.login_max_failures_per_account = 2
    try:
        wrong = {"email": owner.email, "password": "wrong-password"}
        right = {"email": owner.email, "password": owner.password}
        assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
        assert (await client.post("/v1/auth/login", json=right)).status_code == 200
        assert (await client.post("/v1/auth/login", json=wrong)).status_code == 401
        assert (await client.post("/v1/auth/login", json=right)).status_code == 200
    finally:
        settings.login_max_failures_per_account = limit
