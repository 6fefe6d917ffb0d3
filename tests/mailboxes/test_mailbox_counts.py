"""mailbox_counts, kept by the database's triggers (migration 0017), stays equal to a
COUNT of the mailboxes through every kind of write, on each backend; the listing's
`total` and the status counts read it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import delete, event, func, select, update

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service
from mailfleet.mailboxes.repository import MailboxRepository
from mailfleet.mailboxes.schemas import MailboxCreate, MailboxUpdate
from mailfleet.models import Mailbox, MailboxCount, Workspace
from tests.conftest import Account, HeldMailbox, make_account


def _body(email: str) -> MailboxCreate:
    return MailboxCreate.model_validate(
        {"email": email, "smtp": {"host": "held.test", "password": "x"}}
    )


async def _assert_exact(database: Database, *workspace_ids: str) -> dict[str, dict[str, int]]:
    """Each workspace's maintained counts equal a COUNT of its mailboxes; returns them."""
    found = {}
    async with database.transaction() as session:
        for workspace_id in workspace_ids:
            rows = await session.execute(
                select(Mailbox.status, func.count())
                .where(Mailbox.workspace_id == workspace_id)
                .group_by(Mailbox.status)
            )
            counted = {status: n for status, n in rows}
            maintained = await MailboxRepository(session).counts_by_status(workspace_id)
            assert maintained == counted, workspace_id
            found[workspace_id] = maintained
    return found


async def test_counts_stay_exact_through_every_write(
    database: Database, keyring: Keyring, owner: Account, held_mailbox: HeldMailbox
) -> None:
    other = await make_account(database, "other@counts.test")
    # One by one (create_mailbox), active at once and inactive.
    first = await held_mailbox(owner.workspace_id, "one@counts.test")
    async with database.transaction() as session:
        active = await service.create_mailbox(
            session, keyring, owner.workspace_id, _body("two@counts.test"), verify=False
        )
    await held_mailbox(other.workspace_id, "theirs@counts.test")
    assert await _assert_exact(database, owner.workspace_id, other.workspace_id) == {
        owner.workspace_id: {"inactive": 1, "active": 1},
        other.workspace_id: {"inactive": 1},
    }

    # A bulk import's batch: multi-row INSERTs, never an executemany (a statement
    # per row to the driver, and a trigger run per row on PostgreSQL).
    inserts: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO MAILBOXES "):
            inserts.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with database.transaction() as session:
            batch = [_body(f"bulk{i}@counts.test") for i in range(30)]
            ids = await service.create_mailbox_batch(
                session, keyring, owner.workspace_id, batch, job_id="held-by-test"
            )
    finally:
        event.remove(engine, "before_cursor_execute", note)
    # One statement carrying all 30 rows (an executemany sends one row's VALUES).
    assert len(inserts) == 1
    assert inserts[0].count("), (") == 29, inserts[0][:300]
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "inactive": 31,
        "active": 1,
    }

    # Status changes: pausing through the service, and a bulk UPDATE of many rows
    # (verification), one of which changes nothing.
    async with database.transaction() as session:
        mailbox = await service.get_mailbox(session, owner.workspace_id, active.id)
        await service.update_mailbox(
            session, keyring, mailbox, MailboxUpdate.model_validate({"sendingEnabled": False})
        )
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox)
            .where(Mailbox.id.in_([*ids[:10], active.id]))
            .values(status="active")
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(Mailbox).where(Mailbox.id == ids[10]).values(status="error", display_name="e")
        )
        # No status change: no count changes either.
        await session.execute(update(Mailbox).where(Mailbox.id == first).values(display_name="x"))
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "inactive": 20,
        "active": 11,
        "error": 1,
    }

    # Deletes: one through the service, several in one statement.
    async with database.transaction() as session:
        await service.delete_mailbox(
            session, await service.get_mailbox(session, owner.workspace_id, first)
        )
        await session.execute(delete(Mailbox).where(Mailbox.id.in_(ids[:5])))
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "inactive": 19,
        "active": 6,
        "error": 1,
    }

    # A rolled-back transaction leaves no trace.
    try:
        async with database.transaction() as session:
            await session.execute(delete(Mailbox).where(Mailbox.workspace_id == owner.workspace_id))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    await _assert_exact(database, owner.workspace_id)

    # Deleting the workspace deletes its mailboxes (ON DELETE CASCADE) and its counts.
    async with database.transaction() as session:
        await session.execute(delete(Workspace).where(Workspace.id == owner.workspace_id))
    async with database.transaction() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(MailboxCount)
            .where(MailboxCount.workspace_id == owner.workspace_id)
        )
    assert left == 0
    assert await _assert_exact(database, other.workspace_id) == {
        other.workspace_id: {"inactive": 1}
    }


async def test_totals_and_status_counts_come_from_the_maintained_counts(
    client: httpx.AsyncClient, database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    for i in range(3):
        await held_mailbox(owner.workspace_id, f"m{i}@counts.test")
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox)
            .where(Mailbox.email.in_(["m0@counts.test", "m1@counts.test"]))
            .values(status="active", sending_enabled=True)
        )
        # The maintained count is what the totals report: skewed on purpose here,
        # where it can be told apart from a COUNT of the mailboxes.
        await session.execute(
            update(MailboxCount)
            .where(MailboxCount.workspace_id == owner.workspace_id, MailboxCount.status == "active")
            .values(n=MailboxCount.n + 40)
        )
    everything = await client.get("/v1/mailboxes?limit=1", headers=owner.headers)
    assert everything.json()["pagination"]["total"] == 43
    active = await client.get("/v1/mailboxes?status=active&limit=1", headers=owner.headers)
    assert active.json()["pagination"]["total"] == 42
    counts = await client.get("/v1/dashboard/mailbox-status-counts", headers=owner.headers)
    assert counts.status_code == 200, counts.text
    data = counts.json()["data"]
    assert (data["active"], data["inactive"], data["total"]) == (42, 1, 43)
    # A filter the counts do not cover is counted over the mailboxes.
    tagged = await client.get("/v1/mailboxes?provider=custom&limit=1", headers=owner.headers)
    assert tagged.json()["pagination"]["total"] == 3
