"""Signed, durable, retried delivery to a real receiver on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.models import WebhookDelivery, WebhookEvent
from mailfleet.webhooks import service
from mailfleet.webhooks.service import emit
from tests.conftest import Account
from tests.jobs.ticks import clear_of_sweeper_ticks
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.http_receiver import HttpReceiver, Reply
from tests.servers.tls import LoopbackTLS
from tests.webhooks.conftest import (
    deliveries_of,
    register,
    wait_for_delivery,
    wait_for_finished_deliveries,
)

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


async def emit_now(
    database: Database, workspace_id: str, event_type: str, data: dict[str, Any]
) -> None:
    async with database.transaction() as session:
        await emit(session, workspace_id, event_type, data)


async def test_test_event_is_signed_and_recorded(
    client: httpx.AsyncClient,
    owner: Account,
    receiver: HttpReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    webhook = await register(client, owner, receiver.url(), eventTypes=["mailbox.created"])
    receiver.secret = webhook["secret"]
    receiver.script(Reply(200, {"content-type": "text/plain"}, b"thanks " + b"x" * 1000))

    queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
    assert queued.status_code == 202, queued.text
    delivery = queued.json()["data"]
    assert delivery["status"] == "pending"
    assert delivery["eventType"] == "webhook.test"
    assert delivery["attempts"] == []

    [request] = await receiver.wait_for(1)
    assert request.verified is True, request.verification_error
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery["eventId"]
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["user-agent"].startswith("Mailfleet-Webhooks/")
    payload = request.payload
    assert set(payload) == {"id", "type", "createdAt", "workspaceId", "data"}
    assert payload["id"] == delivery["eventId"]
    assert payload["type"] == "webhook.test"
    assert payload["workspaceId"] == owner.workspace_id
    assert ISO_MS_Z.match(payload["createdAt"])
    assert payload["data"]["webhookId"] == webhook["id"]

    done = await wait_for_delivery(client, owner, webhook["id"], delivery["id"])
    assert done["status"] == "succeeded"
    assert done["attemptCount"] == 1
    assert done["lastStatusCode"] == 200
    assert ISO_MS_Z.match(done["finishedAt"])
    [attempt] = done["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["statusCode"] == 200
    assert attempt["error"] is None
    assert attempt["latencyMs"] >= 0
    assert attempt["responseBody"] == "thanks " + "x" * 493  # the first 500 bytes

    listed = await deliveries_of(client, owner, webhook["id"])
    assert [d["id"] for d in listed] == [delivery["id"]]
    secret = webhook["secret"]
    assert secret not in caplog.text
    assert secret.removeprefix("whsec_") not in caplog.text


async def test_emit_fans_out_to_subscribed_endpoints_only(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    mailboxes = await register(client, owner, receiver.url("/a"), eventTypes=["mailbox.created"])
    domains = await register(client, owner, receiver.url("/b"), eventTypes=["domain.connected"])
    everything = await register(client, owner, receiver.url("/c"))
    paused = await register(client, owner, receiver.url("/d"), enabled=False)
    secrets = {"/a": mailboxes["secret"], "/c": everything["secret"]}

    data = {"mailboxId": "m1", "email": "sarah@company.com", "status": "inactive"}
    await emit_now(database, owner.workspace_id, "mailbox.created", data)
    requests = await receiver.wait_for(2)
    await asyncio.sleep(0.3)  # nothing else arrives
    assert sorted(r.path for r in receiver.received()) == ["/a", "/c"]
    for request in requests:
        receiver.secret = secrets[request.path]
        assert request.payload["type"] == "mailbox.created"
        assert request.payload["data"] == data
    assert await deliveries_of(client, owner, domains["id"]) == []
    assert await deliveries_of(client, owner, paused["id"]) == []
    # One event, sent to both with the same webhook-id.
    assert len({r.headers["webhook-id"] for r in requests}) == 1


async def test_emit_rolls_back_with_its_transaction(
    owner: Account, receiver: HttpReceiver, database: Database, client: httpx.AsyncClient
) -> None:
    await register(client, owner, receiver.url())

    async def emit_then_fail() -> None:
        async with database.transaction() as session:
            await emit(session, owner.workspace_id, "mailbox.deleted", {"mailboxId": "m1"})
            raise RuntimeError("the caller's work failed")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    await asyncio.sleep(0.3)
    assert receiver.received() == []
    async with database.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 0


async def test_emit_refuses_unknown_types_and_secrets(owner: Account, database: Database) -> None:
    async with database.transaction() as session:
        with pytest.raises(ValueError, match="unknown webhook event type"):
            await emit(session, owner.workspace_id, "mailbox.exploded", {})
        with pytest.raises(ValueError, match=r"data\.smtp\.password"):
            await emit(
                session,
                owner.workspace_id,
                "mailbox.created",
                {"mailboxId": "m1", "smtp": {"password": "hunter2"}},
            )


async def test_fails_twice_then_succeeds(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    webhook = await register(client, owner, receiver.url())
    receiver.secret = webhook["secret"]
    receiver.script(Reply(500, body=b"boom\x00\xff"), 503)
    counted = {outcome: attempts_counted(outcome) for outcome in ("retry", "succeeded")}

    queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
    done = await wait_for_delivery(client, owner, webhook["id"], queued.json()["data"]["id"])
    assert done["status"] == "succeeded"
    assert [a["statusCode"] for a in done["attempts"]] == [500, 503, 204]
    assert [a["attempt"] for a in done["attempts"]] == [1, 2, 3]
    assert done["attempts"][0]["error"] == "answered 500"
    assert done["attempts"][0]["responseBody"] == "boom\ufffd\ufffd"
    assert done["attempts"][2]["error"] is None
    requests = receiver.received()
    assert len(requests) == 3
    assert all(r.verified for r in requests)
    # Retries carry the same webhook-id, each signed afresh.
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    # Each attempt is counted by its outcome (mailfleet_webhook_delivery_attempts_total).
    assert attempts_counted("retry") == counted["retry"] + 2
    assert attempts_counted("succeeded") == counted["succeeded"] + 1


def attempts_counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "mailfleet_webhook_delivery_attempts_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_receiver_down_when_the_event_fires_and_up_later(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    closed_port: int,
    fast_retries: list[float],
) -> None:
    # Enough retries, spaced out, that a loaded machine still starts the receiver in time.
    fast_retries[:] = [0.5] * 30
    receiver = HttpReceiver(port=closed_port)
    webhook = await register(client, owner, receiver.url(), eventTypes=["mailbox.verified"])
    receiver.secret = webhook["secret"]
    await emit_now(database, owner.workspace_id, "mailbox.verified", {"mailboxId": "m1"})

    deadline = asyncio.get_running_loop().time() + 30
    while True:
        [delivery] = await deliveries_of(client, owner, webhook["id"])
        # The failed attempt and the next one's time are recorded by two steps.
        if delivery["attempts"] and delivery["nextAttemptAt"] is not None:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    first = delivery["attempts"][0]
    assert first["statusCode"] is None
    assert "could not connect" in first["error"]
    assert delivery["status"] == "pending"
    assert delivery["nextAttemptAt"] is not None

    with receiver:
        done = await wait_for_delivery(client, owner, webhook["id"], delivery["id"])
        assert done["status"] == "succeeded"
        assert done["attempts"][-1]["statusCode"] == 204
        assert all(a["statusCode"] is None for a in done["attempts"][:-1])
        [request] = receiver.received()
        assert request.verified is True


async def test_redirects_are_recorded_not_followed(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.default = Reply(302, {"location": elsewhere})
    webhook = await register(client, owner, receiver.url())

    queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
    done = await wait_for_delivery(client, owner, webhook["id"], queued.json()["data"]["id"])
    assert done["status"] == "failed"
    assert len(done["attempts"]) == 4  # the first attempt and three retries
    for attempt in done["attempts"]:
        assert attempt["statusCode"] == 302
        assert attempt["redirectLocation"] == elsewhere
        assert "not followed" in attempt["error"]
    assert {r.path for r in receiver.received()} == {"/hook"}


async def test_private_address_refused_at_delivery_time(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, settings: Settings
) -> None:
    webhook = await register(client, owner, receiver.url())
    previous = settings.allow_private_networks
    settings.allow_private_networks = False
    try:
        queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
        done = await wait_for_delivery(client, owner, webhook["id"], queued.json()["data"]["id"])
    finally:
        settings.allow_private_networks = previous
    assert done["status"] == "failed"
    assert all(a["error"].startswith("FORBIDDEN_TARGET") for a in done["attempts"])
    assert receiver.received() == []


async def test_manual_retry_sends_the_same_event_again(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, fast_retries: list[float]
) -> None:
    fast_retries.clear()
    webhook = await register(client, owner, receiver.url())
    receiver.secret = webhook["secret"]
    receiver.script(500)
    queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
    first = await wait_for_delivery(client, owner, webhook["id"], queued.json()["data"]["id"])
    assert first["status"] == "failed"

    path = f"/v1/webhooks/{webhook['id']}/deliveries"
    retried = await client.post(f"{path}/{first['id']}/retry", headers=owner.headers)
    assert retried.status_code == 202, retried.text
    retry = retried.json()["data"]
    assert retry["id"] != first["id"]
    assert retry["retryOf"] == first["id"]
    assert retry["eventId"] == first["eventId"]
    done = await wait_for_delivery(client, owner, webhook["id"], retry["id"])
    assert done["status"] == "succeeded"
    requests = receiver.received()
    assert [r.status for r in requests] == [500, 204]
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]

    assert (await client.post(f"{path}/nope/retry", headers=owner.headers)).status_code == 404
    succeeded = await client.get(f"{path}?status=succeeded", headers=owner.headers)
    assert [d["id"] for d in succeeded.json()["data"]] == [retry["id"]]
    bad = await client.get(f"{path}?status=lost", headers=owner.headers)
    assert bad.status_code == 400


async def test_sustained_failure_disables_the_endpoint_and_tells_the_others(
    client: httpx.AsyncClient,
    owner: Account,
    receiver: HttpReceiver,
    database: Database,
    fast_retries: list[float],
) -> None:
    fast_retries[:] = [0.01]
    failing = await register(
        client, owner, receiver.url("/failing"), eventTypes=["mailbox.updated"]
    )
    watcher = await register(
        client, owner, receiver.url("/watcher"), eventTypes=["webhook.disabled"]
    )
    receiver.secret = watcher["secret"]
    receiver.default = Reply(500)
    receiver.script(*[Reply(500)] * 6, Reply(204))  # the watcher's request gets the 204

    for number in range(3):
        await emit_now(database, owner.workspace_id, "mailbox.updated", {"mailboxId": f"m{number}"})
        await wait_for_finished_deliveries(client, owner, failing["id"], number + 1)

    [notice] = [r for r in await receiver.wait_for(7) if r.path == "/watcher"]
    assert notice.verified is True
    assert notice.payload["type"] == "webhook.disabled"
    assert notice.payload["data"]["webhookId"] == failing["id"]
    assert notice.payload["data"]["host"] == "127.0.0.1"
    assert "3 deliveries in a row" in notice.payload["data"]["reason"]

    state = (await client.get(f"/v1/webhooks/{failing['id']}", headers=owner.headers)).json()
    assert state["data"]["enabled"] is False
    assert "3 deliveries in a row" in state["data"]["disabledReason"]
    # The disabled endpoint is left out of new events; the watcher got its notice.
    await emit_now(database, owner.workspace_id, "mailbox.updated", {"mailboxId": "m9"})
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == failing["id"])
        )
    assert count == 3
    watched = await wait_for_finished_deliveries(client, owner, watcher["id"], 1)
    assert [d["status"] for d in watched] == ["succeeded"]


async def test_https_receiver_is_reached_by_name_at_a_pinned_address(
    client: httpx.AsyncClient,
    owner: Account,
    loopback_tls: LoopbackTLS,
    dns_names: LocalDnsServer,
) -> None:
    """The request goes to the address the guard resolved, with the name kept for
    the Host header and for TLS, so the certificate still verifies by name."""
    with HttpReceiver(tls=loopback_tls.server_context()) as receiver:
        url = receiver.url(host="localhost")
        webhook = await register(client, owner, url)
        receiver.secret = webhook["secret"]
        queued = await client.post(f"/v1/webhooks/{webhook['id']}/test", headers=owner.headers)
        done = await wait_for_delivery(client, owner, webhook["id"], queued.json()["data"]["id"])
        assert done["status"] == "succeeded", done
        [request] = receiver.received()
        assert request.verified is True
        assert request.headers["host"] == f"localhost:{receiver.port}"


async def test_sweeper_enqueues_a_delivery_whose_enqueue_was_lost(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    """Rows committed without their after-commit enqueue (a crash in between) are
    picked up by the sweeper; sweeping again enqueues nothing twice."""
    from mailfleet.webhooks.workflows import requeue_pending_deliveries

    webhook = await register(client, owner, receiver.url())
    receiver.secret = webhook["secret"]
    await clear_of_sweeper_ticks()
    async with database.sessionmaker() as session:
        await emit(session, owner.workspace_id, "mailbox.deleted", {"mailboxId": "m1"})
        # Commit by hand: Database.transaction would run the after-commit enqueue.
        await session.commit()
    await asyncio.sleep(0.3)
    assert receiver.received() == []

    assert await requeue_pending_deliveries() == 1
    await requeue_pending_deliveries()
    [delivery] = await wait_for_finished_deliveries(client, owner, webhook["id"], 1)
    assert delivery["status"] == "succeeded"
    await asyncio.sleep(0.3)
    [request] = receiver.received()
    assert request.verified is True
    async with database.transaction() as session:
        assert await service.unstarted_delivery_ids(session) == []
