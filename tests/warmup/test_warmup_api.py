"""Warmup settings and bulk switches over the API: defaults, validation, 409s."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.models import WarmupSettings
from tests.conftest import Account, HeldMailbox


async def active_mailbox(
    database: Database, keyring: Keyring, workspace_id: str, email: str, **fields: Any
) -> str:
    body = MailboxCreate.model_validate(
        {"email": email, "smtp": {"host": "held.test", "password": "x"}, **fields}
    )
    async with database.transaction() as session:
        mailbox = await mailboxes.create_mailbox(session, keyring, workspace_id, body, verify=False)
    return mailbox.id


def error_fields(response: httpx.Response) -> list[str]:
    return [d["field"] for d in response.json()["error"]["details"]]


async def test_defaults_then_update(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    mailbox_id = await active_mailbox(
        database, keyring, owner.workspace_id, "w1@alpha.test", dailySendLimit=30
    )
    got = await client.get(f"/v1/mailboxes/{mailbox_id}/warmup", headers=owner.headers)
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert data["enabled"] is False
    assert (data["startPerDay"], data["rampUpPerDay"], data["dailyTarget"]) == (5, 1, 20)
    assert data["replyRate"] == 30
    assert data["sendWindow"] == {"start": "08:00", "end": "18:00", "timezone": "UTC"}
    assert data["state"] == "paused"
    assert data["reason"] == "Warmup is turned off"

    put = await client.put(
        f"/v1/mailboxes/{mailbox_id}/warmup",
        json={
            "enabled": True,
            "dailyTarget": 30,
            "replyRate": 50,
            "sendWindow": {"start": "09:30", "end": "17:00", "timezone": "Europe/Paris"},
        },
        headers=owner.headers,
    )
    assert put.status_code == 200, put.text
    data = put.json()["data"]
    assert data["enabled"] is True
    assert data["state"] == "warming"
    assert data["reason"] is None
    assert data["dailyTarget"] == 30
    assert data["replyRate"] == 50
    assert data["startPerDay"] == 5
    assert data["sendWindow"]["timezone"] == "Europe/Paris"
    assert data["startedOn"] is not None
    again = await client.get(f"/v1/mailboxes/{mailbox_id}/warmup", headers=owner.headers)
    assert again.json()["data"] == data


async def test_bad_settings_are_400_naming_the_field_and_change_nothing(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    mailbox_id = await active_mailbox(
        database, keyring, owner.workspace_id, "w2@alpha.test", dailySendLimit=10
    )
    url = f"/v1/mailboxes/{mailbox_id}/warmup"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"dailyTarget": 0}, "dailyTarget"),
        ({"dailyTarget": 51}, "dailyTarget"),
        ({"dailyTarget": 11}, "dailyTarget"),  # above dailySendLimit (10)
        ({"replyRate": 101}, "replyRate"),
        ({"startPerDay": 0}, "startPerDay"),
        ({"sendWindow": {"start": "25:00"}}, "sendWindow.start"),
        ({"sendWindow": {"timezone": "Mars/Olympus"}}, "sendWindow.timezone"),
        ({"dailyTarjet": 5}, "dailyTarjet"),
    ]
    for body, field in cases:
        response = await client.put(url, json=body, headers=owner.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert field in error_fields(response), (body, response.json())
    late = await client.put(
        url, json={"sendWindow": {"start": "18:00", "end": "08:00"}}, headers=owner.headers
    )
    assert late.status_code == 400
    assert any(f.startswith("sendWindow") for f in error_fields(late))
    data = (await client.get(url, headers=owner.headers)).json()["data"]
    assert data["dailyTarget"] == 10
    assert data["enabled"] is False


async def test_enabling_a_mailbox_that_is_not_active_is_409(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox, database: Database
) -> None:
    mailbox_id = await held_mailbox(owner.workspace_id, "held@alpha.test")
    response = await client.put(
        f"/v1/mailboxes/{mailbox_id}/warmup",
        json={"enabled": True, "dailyTarget": 5},
        headers=owner.headers,
    )
    assert response.status_code == 409, response.text
    assert "awaiting its connection test" in response.json()["error"]["message"]
    async with database.transaction() as session:
        settings = await session.get(WarmupSettings, mailbox_id)
    assert settings is None or (settings.enabled is False and settings.daily_target != 5)


async def test_bulk_enable_by_ids_is_all_or_nothing_and_by_filter_skips(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    held_mailbox: HeldMailbox,
) -> None:
    first = await active_mailbox(database, keyring, owner.workspace_id, "b1@bulk.test")
    second = await active_mailbox(database, keyring, owner.workspace_id, "b2@bulk.test")
    other = await active_mailbox(database, keyring, owner.workspace_id, "o1@other.test")
    held = await held_mailbox(owner.workspace_id, "b3@bulk.test")

    refused = await client.post(
        "/v1/warmup/enable", json={"mailboxIds": [first, held]}, headers=owner.headers
    )
    assert refused.status_code == 409, refused.text
    assert [s["mailboxId"] for s in refused.json()["error"]["skipped"]] == [held]
    async with database.transaction() as session:
        enabled = list(
            await session.scalars(
                select(WarmupSettings.mailbox_id).where(WarmupSettings.enabled.is_(True))
            )
        )
    assert enabled == []

    neither = await client.post("/v1/warmup/enable", json={}, headers=owner.headers)
    assert neither.status_code == 400
    assert error_fields(neither) == ["mailboxIds"]
    unknown = await client.post(
        "/v1/warmup/enable", json={"mailboxIds": ["nope"]}, headers=owner.headers
    )
    assert unknown.status_code == 404

    by_domain = await client.post(
        "/v1/warmup/enable", json={"domain": "bulk.test"}, headers=owner.headers
    )
    assert by_domain.status_code == 200, by_domain.text
    data = by_domain.json()["data"]
    assert sorted(data["updated"]) == sorted([first, second])
    assert [s["mailboxId"] for s in data["skipped"]] == [held]
    for mailbox_id, state in ((first, "warming"), (other, "paused")):
        got = await client.get(f"/v1/mailboxes/{mailbox_id}/warmup", headers=owner.headers)
        assert got.json()["data"]["state"] == state

    off = await client.post(
        "/v1/warmup/disable", json={"mailboxIds": [first]}, headers=owner.headers
    )
    assert off.status_code == 200
    assert off.json()["data"]["updated"] == [first]
    got = await client.get(f"/v1/mailboxes/{first}/warmup", headers=owner.headers)
    assert got.json()["data"]["enabled"] is False


async def test_pausing_the_mailbox_pauses_warmup_with_the_reason(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    mailbox_id = await active_mailbox(database, keyring, owner.workspace_id, "p1@alpha.test")
    await client.put(
        f"/v1/mailboxes/{mailbox_id}/warmup", json={"enabled": True}, headers=owner.headers
    )
    paused = await client.put(
        f"/v1/mailboxes/{mailbox_id}", json={"sendingEnabled": False}, headers=owner.headers
    )
    assert paused.status_code == 200
    # The state follows at the next round; the analytics report derives it now too.
    from mailfleet.kit.clock import utcnow
    from mailfleet.models import Mailbox
    from mailfleet.warmup import service

    async with database.transaction() as session:
        settings = await session.get(WarmupSettings, mailbox_id)
        mailbox = await session.get(Mailbox, mailbox_id)
        assert settings is not None
        assert mailbox is not None
        await service.refresh_state(session, settings, mailbox, utcnow())
    got = await client.get(f"/v1/mailboxes/{mailbox_id}/warmup", headers=owner.headers)
    data = got.json()["data"]
    assert data["state"] == "paused"
    assert data["reason"] == "Sending is paused for this mailbox"


async def test_analytics_routes_are_not_taken_for_a_mailbox_id(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    mailbox_id = await active_mailbox(database, keyring, owner.workspace_id, "a1@alpha.test")
    await client.put(
        f"/v1/mailboxes/{mailbox_id}/warmup", json={"enabled": True}, headers=owner.headers
    )
    listed = await client.get("/v1/mailboxes/warmup-analytics", headers=owner.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["pagination"]["total"] == 1
    [report] = body["data"]
    assert report["mailboxId"] == mailbox_id
    assert report["state"] == "warming"
    assert report["totals"]["sent"] == 0
    assert report["healthScore"] is None
    assert report["daily"] == []
    assert report["to"] > report["from"]
    assert report["inboxRate"] is None

    one = await client.get(
        f"/v1/mailboxes/{mailbox_id}/warmup/analytics?from=2026-01-01&to=2026-01-31",
        headers=owner.headers,
    )
    assert one.status_code == 200, one.text
    assert one.json()["data"]["from"] == "2026-01-01"
    backwards = await client.get(
        "/v1/mailboxes/warmup-analytics?from=2026-02-01&to=2026-01-01", headers=owner.headers
    )
    assert backwards.status_code == 400
    assert error_fields(backwards) == ["from"]
