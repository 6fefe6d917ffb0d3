"""A CSV export of thousands of mailboxes: streamed in batches, each row right, in
order, and never more than a batch of mailboxes read at once."""

from __future__ import annotations

import csv
import io
import random

import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.db import Database
from mailfleet.exports import service
from mailfleet.exports.schemas import MailboxExportRequest
from mailfleet.kit.crypto import Keyring
from mailfleet.models import Mailbox
from tests.conftest import Account
from tests.scale.fleet_data import Fleet, load_fleet, mailbox_email

N = 2500


@pytest.fixture
async def fleet(database: Database, keyring: Keyring, owner: Account) -> Fleet:
    async with database.engine.begin() as connection:
        return await connection.run_sync(load_fleet, owner.workspace_id, N, keyring)


def rows_of(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


async def _oldest_first(database: Database, workspace_id: str, **where: str) -> list[str]:
    query = select(Mailbox.email).where(Mailbox.workspace_id == workspace_id)
    for name, value in where.items():
        query = query.where(getattr(Mailbox, name) == value)
    async with database.transaction() as session:
        return list(await session.scalars(query.order_by(Mailbox.created_at, Mailbox.id)))


async def test_every_mailbox_in_order_with_tags_and_passwords(
    client: httpx.AsyncClient, owner: Account, database: Database, fleet: Fleet
) -> None:
    response = await client.post("/v1/exports/mailboxes", json={}, headers=owner.headers)
    rows = rows_of(response)
    assert len(rows) == N
    assert [row["email"] for row in rows] == await _oldest_first(database, owner.workspace_id)
    by_email = {row["email"]: row for row in rows}
    for i in (0, 1, 3, N - 1):
        row = by_email[mailbox_email(i)]
        expected_tags = {fleet.tag_names[i % 20]}
        if i % 3 == 0:
            expected_tags.add(fleet.tag_names[(i % 20 + 7) % 20])
        assert set(row["tags"].split(";")) == expected_tags
        assert row["smtp_password"] == "fleet-smtp-password"
        assert row["imap_password"] == "fleet-imap-password"
        assert row["smtp_username"] == mailbox_email(i)

    history = await client.get("/v1/export-history", headers=owner.headers)
    (recorded,) = history.json()["data"]
    assert recorded["id"] == response.headers["x-export-id"]
    assert recorded["totalMailboxes"] == N


async def test_filtered_and_named_selections(
    client: httpx.AsyncClient, owner: Account, database: Database, fleet: Fleet
) -> None:
    paused = rows_of(
        await client.post(
            "/v1/exports/mailboxes",
            json={"status": "paused", "includeCredentials": False},
            headers=owner.headers,
        )
    )
    expected = await _oldest_first(database, owner.workspace_id, status="paused")
    assert 0 < len(expected) < N
    assert [row["email"] for row in paused] == expected
    assert {row["smtp_password"] for row in paused} == {""}

    # Named mailboxes, given in any order, come out oldest first like a filter's.
    async with database.transaction() as session:
        ids = list(
            await session.scalars(
                select(Mailbox.id)
                .where(Mailbox.workspace_id == owner.workspace_id)
                .order_by(Mailbox.created_at, Mailbox.id)
                .limit(1200)
            )
        )
    shuffled = ids[:]
    random.Random(3).shuffle(shuffled)
    named = rows_of(
        await client.post(
            "/v1/exports/mailboxes", json={"mailboxIds": shuffled}, headers=owner.headers
        )
    )
    expected_named = (await _oldest_first(database, owner.workspace_id))[:1200]
    assert [row["email"] for row in named] == expected_named


async def test_the_file_is_written_a_batch_at_a_time(
    database: Database,
    keyring: Keyring,
    owner: Account,
    fleet: Fleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "_CSV_BATCH", 100)
    async with database.transaction() as session:
        export = await service.begin_csv_export(
            session, keyring, owner.workspace_id, owner.user_id, "owner", MailboxExportRequest()
        )
    pieces: list[int] = []
    async with database.sessionmaker() as session:
        async for piece in service.csv_chunks(session, export):
            pieces.append(piece.count("\r\n"))
    # The header, then one piece per batch of 100 rows.
    assert pieces == [1] + [100] * (N // 100)
    async with database.transaction() as session:
        total = await session.scalar(
            select(func.count()).where(Mailbox.workspace_id == owner.workspace_id)
        )
    assert total == N
