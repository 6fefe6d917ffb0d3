"""On PostgreSQL, `search` can be answered from the pg_trgm indexes (migration 0018)
and answers what the LIKE answers: substrings of the email or the display name, in
any case."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, text, update

from mailfleet.db import Database
from mailfleet.mailboxes import repository as mailbox_repository
from mailfleet.mailboxes.repository import MailboxRepository
from mailfleet.models import Mailbox
from tests.conftest import Account, HeldMailbox, make_account
from tests.plans import query_plan


async def test_search_reads_the_trigram_indexes_on_postgresql(
    client: httpx.AsyncClient, database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    if database.is_sqlite:
        pytest.skip("pg_trgm indexes exist on PostgreSQL only")
    await held_mailbox(owner.workspace_id, "farid.95@fleet.test", displayName="Ops Desk")
    await held_mailbox(owner.workspace_id, "ana.1@fleet.test", displayName="FARID Support")
    await held_mailbox(owner.workspace_id, "ben.2@fleet.test", displayName="Sales")

    async with database.transaction() as session:
        # Whether the indexes can serve `search`'s condition at all.
        query = select(Mailbox.id).where(MailboxRepository.searched("Farid"))
        plan = await query_plan(session, query, is_sqlite=False)
    assert "ix_mailboxes_email_trgm" in plan, plan
    assert "ix_mailboxes_display_name_trgm" in plan, plan

    found = await client.get("/v1/mailboxes?search=Farid", headers=owner.headers)
    assert sorted(m["email"] for m in found.json()["data"]) == [
        "ana.1@fleet.test",
        "farid.95@fleet.test",
    ]


SEARCH_FLEET = [
    ("farid.95@fleet.test", "Ops Desk"),
    ("ana.1@fleet.test", "FARID Support"),
    ("ben.2@fleet.test", "Sales"),
    ("chloé@fleet.test", "Chloé Ünal"),
    ("dev_100%@fleet.test", 'The "Quoted" One'),
    ("eva.3@other.test", "Eva Farida"),
]
SEARCHES = ["farid", "FARID", "fa", "a", "fleet.test", "%", "_1", '"quoted"', "chlo", "CHLOÉ"]
SEARCHES += ["ünal", "ÜNAL", "sales", "xyz", "d.9", "other.test", "ne"]


async def test_search_reads_the_trigram_index_on_sqlite(
    client: httpx.AsyncClient,
    database: Database,
    owner: Account,
    held_mailbox: HeldMailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On SQLite a search of three characters or more reads mailbox_search (FTS5
    trigrams, migration 0021) when it holds the search in few enough mailboxes, and
    answers exactly what the LIKE over every mailbox answers, through inserts,
    changes of email and display name, and deletes."""
    if not database.is_sqlite:
        pytest.skip("mailbox_search is SQLite's; PostgreSQL has pg_trgm (test above)")
    other = await make_account(database, "other@search.test")
    ids = [
        await held_mailbox(owner.workspace_id, email, displayName=name)
        for email, name in SEARCH_FLEET
    ]
    await held_mailbox(other.workspace_id, "farid.7@theirs.test", displayName="Farid")

    async def answers() -> list[Any]:
        found = []
        for search in SEARCHES:
            for limit in ("2", "100"):
                response = await client.get(
                    "/v1/mailboxes",
                    params={"search": search, "limit": limit},
                    headers=owner.headers,
                )
                assert response.status_code == 200, response.text
                body = response.json()
                found.append((search, [m["email"] for m in body["data"]], body["pagination"]))
        return found

    async def both_ways() -> list[Any]:
        indexed = await answers()
        with monkeypatch.context() as scan:
            scan.setattr(mailbox_repository, "SEARCH_INDEX_CAP", -1)  # never the index
            assert indexed == await answers()
        return indexed

    async with database.transaction() as session:
        repository = MailboxRepository(session)
        assert (await repository.match_search("Farid")).phrase == '"farid"'
        assert (await repository.match_search('a "b')).phrase == '"a ""b"'
        assert (await repository.match_search("fa")).phrase is None  # no trigram
    with monkeypatch.context() as capped:
        capped.setattr(mailbox_repository, "SEARCH_INDEX_CAP", 2)
        async with database.transaction() as session:
            # "farid" is in four mailboxes' trigrams (one in the other workspace).
            assert (await MailboxRepository(session).match_search("farid")).phrase is None

    found = {search: emails for search, emails, _ in await both_ways() if emails}
    assert found["farid"] == ["eva.3@other.test", "ana.1@fleet.test", "farid.95@fleet.test"]
    assert found["CHLOÉ"] == ["chloé@fleet.test"]  # the é as given: LIKE folds ASCII only
    # The index folds Ü to ü, the LIKE it narrows for does not: no answer either way.
    assert "ünal" not in found
    assert "ÜNAL" not in found
    assert found["_1"] == ["dev_100%@fleet.test"]  # % and _ are themselves
    assert found['"quoted"'] == ["dev_100%@fleet.test"]
    assert found["%"] == ["dev_100%@fleet.test"]

    # Changed, the index follows: the old words are gone, the new ones found.
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox).where(Mailbox.id == ids[0]).values(email="zed.95@fleet.test")
        )
        await session.execute(
            update(Mailbox).where(Mailbox.id == ids[2]).values(display_name="Farid Sales")
        )
        await session.execute(delete(Mailbox).where(Mailbox.id == ids[1]))
    found = {search: emails for search, emails, _ in await both_ways() if emails}
    assert found["farid"] == ["eva.3@other.test", "ben.2@fleet.test"]
    async with database.transaction() as session:
        # FTS5's own check of the index against its content table.
        await session.execute(
            text("INSERT INTO mailbox_search (mailbox_search) VALUES ('integrity-check')")
        )
