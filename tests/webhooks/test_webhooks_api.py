"""Registering, listing, updating and deleting webhook endpoints; URL and event-type rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.errors import ValidationFailed
from mailfleet.models import WebhookEndpoint
from mailfleet.webhooks import events
from mailfleet.webhooks.service import check_webhook_url
from tests.conftest import Account, make_account
from tests.servers.http_receiver import HttpReceiver
from tests.webhooks.conftest import register

WEBHOOK_KEYS = {
    "id",
    "url",
    "eventTypes",
    "description",
    "enabled",
    "disabledAt",
    "disabledReason",
    "createdAt",
    "updatedAt",
}
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
README = Path(__file__).resolve().parents[2] / "README.md"


async def test_register_shows_the_secret_once(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    response = await client.post(
        "/v1/webhooks",
        json={
            "url": receiver.url(),
            "eventTypes": ["mailbox.created", "mailbox.deleted", "mailbox.created"],
            "description": "CRM sync",
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert "not shown again" in body["message"]
    created = body["data"]
    assert set(created) == WEBHOOK_KEYS | {"secret"}
    secret = created["secret"]
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
    assert created["eventTypes"] == ["mailbox.created", "mailbox.deleted"]
    assert created["enabled"] is True
    assert ISO_MS_Z.match(created["createdAt"])

    listed = await client.get("/v1/webhooks", headers=owner.headers)
    assert listed.status_code == 200
    assert listed.json()["pagination"] == {"total": 1, "limit": 100, "skip": 0, "hasMore": False}
    assert set(listed.json()["data"][0]) == WEBHOOK_KEYS
    one = await client.get(f"/v1/webhooks/{created['id']}", headers=owner.headers)
    assert set(one.json()["data"]) == WEBHOOK_KEYS
    for answer in (listed, one):
        assert secret not in answer.text
        assert secret.removeprefix("whsec_") not in answer.text

    # At rest the secret is keyring ciphertext, never the secret itself.
    async with database.transaction() as session:
        stored = await session.scalar(select(WebhookEndpoint.secret_enc))
    assert stored is not None
    assert stored.startswith("v1:")
    assert secret.removeprefix("whsec_") not in stored


async def test_event_types_default_to_all_and_unknown_ones_are_refused(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    everything = await register(client, owner, receiver.url())
    assert everything["eventTypes"] == ["*"]
    star = await register(client, owner, receiver.url(), eventTypes=["mailbox.created", "*"])
    assert star["eventTypes"] == ["*"]

    unknown = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url(), "eventTypes": ["mailbox.created", "mailbox.exploded"]},
        headers=owner.headers,
    )
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["eventTypes"]
    assert "mailbox.exploded" in error["details"][0]["message"]

    empty = await client.post(
        "/v1/webhooks", json={"url": receiver.url(), "eventTypes": []}, headers=owner.headers
    )
    assert empty.status_code == 400
    assert empty.json()["error"]["details"][0]["field"] == "eventTypes"

    typo = await client.post(
        "/v1/webhooks", json={"url": receiver.url(), "events": ["*"]}, headers=owner.headers
    )
    assert typo.status_code == 400
    assert typo.json()["error"]["details"][0]["field"] == "events"


async def test_event_type_catalogue(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.get("/v1/webhooks/event-types", headers=owner.headers)
    assert response.status_code == 200
    names = [event["name"] for event in response.json()["data"]]
    assert names == [event.name for event in events.CATALOGUE]
    assert {
        "mailbox.created",
        "mailbox.verified",
        "mailbox.verification_failed",
        "mailbox.updated",
        "mailbox.deleted",
        "bulk_job.completed",
        "export.completed",
        "domain.connected",
        "domain.dns_status_changed",
        "domain.nameservers_propagated",
        "webhook.disabled",
        "webhook.test",
    } <= set(names)


def test_readme_documents_every_event_type() -> None:
    section = README.read_text().split("## Webhooks", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_.]+)` \|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(event.name for event in events.CATALOGUE)


async def test_update_and_delete(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    webhook = await register(client, owner, receiver.url(), eventTypes=["mailbox.created"])
    path = f"/v1/webhooks/{webhook['id']}"
    updated = await client.put(
        path,
        json={
            "url": receiver.url("/other"),
            "eventTypes": ["domain.connected"],
            "description": "domains only",
            "enabled": False,
        },
        headers=owner.headers,
    )
    assert updated.status_code == 200, updated.text
    data = updated.json()["data"]
    assert data["url"] == receiver.url("/other")
    assert data["eventTypes"] == ["domain.connected"]
    assert data["description"] == "domains only"
    assert data["enabled"] is False
    assert data["disabledReason"] == "Disabled through the API"
    assert ISO_MS_Z.match(data["disabledAt"])

    # A disabled endpoint gets no test event until it is enabled again.
    refused = await client.post(f"{path}/test", headers=owner.headers)
    assert refused.status_code == 409
    enabled = await client.put(path, json={"enabled": True}, headers=owner.headers)
    assert enabled.json()["data"]["enabled"] is True
    assert enabled.json()["data"]["disabledAt"] is None
    assert enabled.json()["data"]["eventTypes"] == ["domain.connected"]

    bad = await client.put(path, json={"eventTypes": ["nope"]}, headers=owner.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "eventTypes"

    deleted = await client.delete(path, headers=owner.headers)
    assert deleted.status_code == 200
    assert (await client.get(path, headers=owner.headers)).status_code == 404
    assert (await client.delete(path, headers=owner.headers)).status_code == 404


async def test_webhooks_belong_to_one_workspace(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    webhook = await register(client, owner, receiver.url())
    stranger = await make_account(database, "stranger@example.test")
    assert (await client.get("/v1/webhooks", headers=stranger.headers)).json()["data"] == []
    for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/test")):
        kwargs: dict[str, Any] = {"json": {}} if method == "PUT" else {}
        response = await client.request(
            method, f"/v1/webhooks/{webhook['id']}{suffix}", headers=stranger.headers, **kwargs
        )
        assert response.status_code == 404, (method, suffix, response.text)


async def test_viewers_read_but_do_not_write(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    webhook = await register(client, owner, receiver.url())
    viewer = await make_account(database, "viewer@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    as_viewer = {**viewer.headers, "x-workspace-id": owner.workspace_id}
    listed = await client.get("/v1/webhooks", headers=as_viewer)
    assert [w["id"] for w in listed.json()["data"]] == [webhook["id"]]
    for method, path in (
        ("POST", "/v1/webhooks"),
        ("PUT", f"/v1/webhooks/{webhook['id']}"),
        ("DELETE", f"/v1/webhooks/{webhook['id']}"),
        ("POST", f"/v1/webhooks/{webhook['id']}/test"),
    ):
        response = await client.request(
            method, path, json={"url": receiver.url()}, headers=as_viewer
        )
        assert response.status_code == 403, (method, path, response.text)


@pytest.mark.usefixtures("private_networks_refused")
async def test_private_addresses_are_refused_when_private_networks_are_not_allowed(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    for url in (receiver.url(), "http://10.1.2.3/hook", "http://[::1]:8080/hook"):
        response = await client.post("/v1/webhooks", json={"url": url}, headers=owner.headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"][0]["field"] == "url"
        assert "not public" in error["message"]
    assert (await client.get("/v1/webhooks", headers=owner.headers)).json()["data"] == []


async def test_malformed_urls_are_refused_without_echoing_them(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for url in ("ftp://example.com/x", "http://user:token123@example.com/", "not a url"):
        response = await client.post("/v1/webhooks", json={"url": url}, headers=owner.headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["details"][0]["field"] == "url"
        assert "token123" not in response.text


def _settings(env: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"env": env, "allow_private_networks": False}
    values.update(overrides)
    return Settings(**values)


async def test_https_is_required_outside_development_and_test() -> None:
    # Public address literals: the guard decides without a DNS lookup.
    plain, secure = "http://93.184.215.14/hook", "https://93.184.215.14/hook"
    with pytest.raises(ValidationFailed) as refused:
        await check_webhook_url(plain, _settings("production"))
    assert refused.value.extra["details"][0]["field"] == "url"
    assert "https" in refused.value.message
    await check_webhook_url(secure, _settings("production"))
    await check_webhook_url(plain, _settings("development"))
    await check_webhook_url(plain, _settings("test"))
    # Private networks stay refused in production even over https.
    with pytest.raises(ValidationFailed):
        await check_webhook_url("https://192.168.1.10/hook", _settings("production"))
    await check_webhook_url(
        "https://192.168.1.10/hook", _settings("production", allow_private_networks=True)
    )
