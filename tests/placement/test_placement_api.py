"""Placement test input: every refusal is a 400 naming the field, and sends nothing.

No mail server here: the mailboxes are active but point at names nobody serves,
and a refused test must never reach the point of connecting to them.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.models import Mailbox, PlacementResult, PlacementTest
from tests.api.test_bad_input import field_of
from tests.conftest import Account, HeldMailbox


async def active_mailbox(
    database: Database, keyring: Keyring, workspace_id: str, email: str
) -> str:
    body = MailboxCreate.model_validate(
        {"email": email, "smtp": {"host": "smtp.unserved.test", "password": "x"}}
    )
    async with database.transaction() as session:
        mailbox = await mailboxes.create_mailbox(session, keyring, workspace_id, body, verify=False)
    return mailbox.id


async def count_tests(database: Database) -> tuple[int, int]:
    async with database.transaction() as session:
        tests = await session.scalar(select(func.count()).select_from(PlacementTest))
        results = await session.scalar(select(func.count()).select_from(PlacementResult))
    return tests or 0, results or 0


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "subject": "Hello", **fields}


async def test_bad_input_names_the_field_and_sends_nothing(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    held_mailbox: HeldMailbox,
) -> None:
    ws = owner.workspace_id
    sender = await active_mailbox(database, keyring, ws, "sender@alpha.test")
    seed = await active_mailbox(database, keyring, ws, "seed@beta.test")
    inactive = await held_mailbox(ws, "held@alpha.test")
    cases: list[tuple[dict[str, Any], str]] = [
        (body(fromMailboxIds=["nope"], seedMailboxIds=[seed]), "fromMailboxIds"),
        (body(fromMailboxIds=[inactive], seedMailboxIds=[seed]), "fromMailboxIds"),
        (body(fromMailboxIds=[sender], seedMailboxIds=["nope"]), "seedMailboxIds"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[inactive]), "seedMailboxIds"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed, sender]), "seedMailboxIds"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[]), "seedMailboxIds"),
        # No seedMailboxIds and no mailbox marked as a seed: zero seeds.
        (body(fromMailboxIds=[sender]), "seedMailboxIds"),
        (body(fromMailboxIds=[], seedMailboxIds=[seed]), "fromMailboxIds"),
        (
            body(fromMailboxIds=[f"m{i}" for i in range(51)], seedMailboxIds=[seed]),
            "fromMailboxIds",
        ),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed], timeoutMinutes=4), "timeoutMinutes"),
        (
            body(fromMailboxIds=[sender], seedMailboxIds=[seed], timeoutMinutes=241),
            "timeoutMinutes",
        ),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed], deliveryMode="all"), "deliveryMode"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed], subject=""), "subject"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed], subject="a\nBcc: x"), "subject"),
        ({"fromMailboxIds": [sender], "seedMailboxIds": [seed], "subject": "x"}, "name"),
        (body(fromMailboxIds=[sender], seedMailboxIds=[seed], colour="red"), "colour"),
    ]
    for payload, field in cases:
        answer = await client.post("/v1/placement-tests", json=payload, headers=owner.headers)
        assert answer.status_code == 400, (payload, answer.text)
        assert field in field_of(answer), (payload, answer.text)
    assert await count_tests(database) == (0, 0)

    # Unknown ids anywhere: 404 for a test, never a 500.
    assert (await client.get("/v1/placement-tests/nope", headers=owner.headers)).status_code == 404
    assert (
        await client.delete("/v1/placement-tests/nope", headers=owner.headers)
    ).status_code == 404


async def test_more_than_2500_messages_is_refused_naming_both_fields(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    ws = owner.workspace_id
    tag = secrets.token_hex(3)
    senders = [
        await active_mailbox(database, keyring, ws, f"s{i}-{tag}@alpha.test") for i in range(50)
    ]
    seeds = [
        await active_mailbox(database, keyring, ws, f"d{i}-{tag}@beta.test") for i in range(51)
    ]
    # Listed: 50 x 51 = 2550.
    listed = await client.post(
        "/v1/placement-tests",
        json=body(fromMailboxIds=senders, seedMailboxIds=seeds),
        headers=owner.headers,
    )
    assert listed.status_code == 400, listed.text
    assert set(field_of(listed)) == {"fromMailboxIds", "seedMailboxIds"}
    assert "2550" in listed.json()["error"]["message"]
    # The workspace's seeds by default: the same 51.
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox).where(Mailbox.id.in_(seeds)).values(placement_seed=True)
        )
    default = await client.post(
        "/v1/placement-tests", json=body(fromMailboxIds=senders), headers=owner.headers
    )
    assert default.status_code == 400, default.text
    assert "seedMailboxIds" in field_of(default)
    assert await count_tests(database) == (0, 0)
    listed_seeds = await client.get("/v1/placement-tests/seeds?limit=1000", headers=owner.headers)
    assert listed_seeds.json()["pagination"]["total"] == 51


@pytest.mark.parametrize("flag", [True, False])
async def test_placement_seed_is_set_and_cleared_through_put(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring, flag: bool
) -> None:
    mailbox = await active_mailbox(database, keyring, owner.workspace_id, "x@gmail.com")
    first = await client.put(
        f"/v1/mailboxes/{mailbox}", json={"placementSeed": True}, headers=owner.headers
    )
    assert first.json()["data"]["placementSeed"] is True
    second = await client.put(
        f"/v1/mailboxes/{mailbox}", json={"placementSeed": flag}, headers=owner.headers
    )
    assert second.json()["data"]["placementSeed"] is flag
    seeds = (await client.get("/v1/placement-tests/seeds", headers=owner.headers)).json()
    assert [s["provider"] for s in seeds["data"]] == (["google"] if flag else [])
    assert (
        await client.put(
            f"/v1/mailboxes/{mailbox}", json={"placementSeed": "maybe"}, headers=owner.headers
        )
    ).status_code == 400
