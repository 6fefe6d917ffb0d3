"""On PostgreSQL, `search` can be answered from the pg_trgm indexes (migration 0018)
and answers what the LIKE answers: substrings of the email or the display name, in
any case."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from mailfleet.db import Database
from mailfleet.mailboxes.repository import MailboxRepository
from mailfleet.models import Mailbox
from tests.conftest import Account, HeldMailbox


async def test_search_reads_the_trigram_indexes_on_postgresql(
    client: httpx.AsyncClient, database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    if database.is_sqlite:
        pytest.skip("pg_trgm indexes exist on PostgreSQL only")
    await held_mailbox(owner.workspace_id, "farid.95@fleet.test", displayName="Ops Desk")
    await held_mailbox(owner.workspace_id, "ana.1@fleet.test", displayName="FARID Support")
    await held_mailbox(owner.workspace_id, "ben.2@fleet.test", displayName="Sales")

    async with database.transaction() as session:
        # A table this small is cheaper to scan; forbid that, so the plan shows
        # whether the indexes can serve `search`'s condition at all.
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        query = select(Mailbox.id).where(MailboxRepository.searched("Farid"))
        compiled = query.compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(await session.scalars(text(f"EXPLAIN {compiled}")))
    assert "ix_mailboxes_email_trgm" in plan, plan
    assert "ix_mailboxes_display_name_trgm" in plan, plan

    found = await client.get("/v1/mailboxes?search=Farid", headers=owner.headers)
    assert sorted(m["email"] for m in found.json()["data"]) == [
        "ana.1@fleet.test",
        "farid.95@fleet.test",
    ]
