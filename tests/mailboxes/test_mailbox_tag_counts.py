"""mailbox_tag_counts, kept by the database's triggers on mailbox_tags (migration
0019), stays equal to a COUNT of each tag's links through every kind of write, on
each backend; a listing filtered by one tag reads its `total` there."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import httpx
from sqlalchemy import delete, func, insert, select, text, update

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes import service
from mailfleet.mailboxes.repository import MailboxFilters, MailboxRepository
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.models import Mailbox, MailboxTagCount, Tag, Workspace, mailbox_tags
from tests.conftest import Account, HeldMailbox, make_account


def _body(email: str, *tags: str) -> MailboxCreate:
    return MailboxCreate.model_validate(
        {"email": email, "smtp": {"host": "held.test", "password": "x"}, "tags": [*tags]}
    )


async def _assert_exact(database: Database, *workspace_ids: str) -> dict[str, dict[str, int]]:
    """Each tag's maintained count equals a COUNT of its links, per workspace, and
    no counter row outlives its tag; returns {workspace: {tag name: count}} (tags
    with no mailboxes left out)."""
    found: dict[str, dict[str, int]] = {}
    async with database.transaction() as session:
        orphans = await session.scalar(
            select(func.count())
            .select_from(MailboxTagCount)
            .where(MailboxTagCount.tag_id.not_in(select(Tag.id)))
        )
        assert orphans == 0
        # Each link carries its mailbox's creation time (migration 0020's triggers).
        stale = await session.scalar(
            select(func.count())
            .select_from(mailbox_tags.join(Mailbox, Mailbox.id == mailbox_tags.c.mailbox_id))
            .where(mailbox_tags.c.mailbox_created_at.is_distinct_from(Mailbox.created_at))
        )
        assert stale == 0
        for workspace_id in workspace_ids:
            rows = await session.execute(
                select(Tag.name, func.count(mailbox_tags.c.mailbox_id))
                .outerjoin(mailbox_tags, mailbox_tags.c.tag_id == Tag.id)
                .where(Tag.workspace_id == workspace_id)
                .group_by(Tag.name)
            )
            counted: dict[str, int] = {name: n for name, n in rows}
            rows = await session.execute(
                select(Tag.name, func.coalesce(func.sum(MailboxTagCount.n), 0))
                .outerjoin(MailboxTagCount, MailboxTagCount.tag_id == Tag.id)
                .where(Tag.workspace_id == workspace_id)
                .group_by(Tag.name)
            )
            assert {name: n for name, n in rows} == counted, workspace_id
            repository = MailboxRepository(session)
            for name, n in counted.items():
                assert await repository.count_tagged(workspace_id, [name]) == n, name
            found[workspace_id] = {name: n for name, n in counted.items() if n}
    return found


async def _tag_id(database: Database, workspace_id: str, name: str) -> str:
    async with database.transaction() as session:
        tag_id = await session.scalar(
            select(Tag.id).where(Tag.workspace_id == workspace_id, Tag.name == name)
        )
    assert tag_id is not None
    return tag_id


async def test_tag_counts_stay_exact_through_every_write(
    client: httpx.AsyncClient,
    database: Database,
    keyring: Keyring,
    owner: Account,
    held_mailbox: HeldMailbox,
) -> None:
    other = await make_account(database, "other@tagcounts.test")
    # One by one (create_mailbox), with tags created on the way.
    first = await held_mailbox(owner.workspace_id, "one@tagcounts.test", tags=["a", "b"])
    second = await held_mailbox(owner.workspace_id, "two@tagcounts.test", tags=["a"])
    await held_mailbox(other.workspace_id, "theirs@tagcounts.test", tags=["a"])
    assert await _assert_exact(database, owner.workspace_id, other.workspace_id) == {
        owner.workspace_id: {"a": 2, "b": 1},
        other.workspace_id: {"a": 1},
    }

    # A bulk import's batch: its links go in as one executemany for the whole batch.
    async with database.transaction() as session:
        batch = [
            _body(f"bulk{i}@tagcounts.test", *(["a", "c"] if i % 2 else ["c"])) for i in range(30)
        ]
        ids = await service.create_mailbox_batch(
            session, keyring, owner.workspace_id, batch, job_id="held-by-test"
        )
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "a": 17,
        "b": 1,
        "c": 30,
    }

    # Tags replaced through PUT /v1/mailboxes/{id}: the ORM deletes the links
    # dropped and inserts the new ones; then all dropped.
    replaced = await client.put(
        f"/v1/mailboxes/{first}", json={"tags": ["b", "c", "d"]}, headers=owner.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "a": 16,
        "b": 1,
        "c": 31,
        "d": 1,
    }
    cleared = await client.put(f"/v1/mailboxes/{second}", json={"tags": []}, headers=owner.headers)
    assert cleared.status_code == 200, cleared.text
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id]["a"] == 15

    # Links written as raw SQL: a multi-row insert, a change of a link's tag, a
    # change of its mailbox (no tag's count moves), a delete of several links; and
    # a mailbox's creation time changed (its links take the new one).
    a, b, c, d = [await _tag_id(database, owner.workspace_id, name) for name in "abcd"]
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox)
            .where(Mailbox.id == ids[13])
            .values(created_at=datetime(2025, 6, 1, 12, 30, 0, 250000, tzinfo=UTC))
        )
        await session.execute(
            insert(mailbox_tags).values([{"mailbox_id": m, "tag_id": d} for m in ids[:6]])
        )
        await session.execute(
            update(mailbox_tags)
            .where(mailbox_tags.c.tag_id == c, mailbox_tags.c.mailbox_id.in_(ids[:4]))
            .values(tag_id=b)
        )
        await session.execute(
            update(mailbox_tags)
            .where(mailbox_tags.c.tag_id == d, mailbox_tags.c.mailbox_id == first)
            .values(mailbox_id=second)
        )
        await session.execute(
            delete(mailbox_tags).where(
                mailbox_tags.c.tag_id == a, mailbox_tags.c.mailbox_id.in_(ids)
            )
        )
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "b": 5,
        "c": 27,
        "d": 7,
    }

    # Mailboxes deleted: one through DELETE /v1/mailboxes/{id} (the ORM deletes its
    # links), several in one statement (their links go by ON DELETE CASCADE).
    deleted = await client.delete(f"/v1/mailboxes/{first}", headers=owner.headers)
    assert deleted.status_code == 200, deleted.text
    async with database.transaction() as session:
        await session.execute(delete(Mailbox).where(Mailbox.id.in_(ids[:10])))
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {
        "c": 20,
        "d": 1,
    }

    # A rolled-back transaction leaves no trace.
    try:
        async with database.transaction() as session:
            await session.execute(delete(mailbox_tags))
            await session.execute(insert(mailbox_tags).values(mailbox_id=ids[20], tag_id=a))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    await _assert_exact(database, owner.workspace_id)

    # A tag deleted (DELETE /v1/tags/{id}) takes its links and its counter rows.
    dropped = await client.delete(f"/v1/tags/{c}", headers=owner.headers)
    assert dropped.status_code == 200, dropped.text
    async with database.transaction() as session:
        left = await session.scalar(
            select(func.count()).select_from(MailboxTagCount).where(MailboxTagCount.tag_id == c)
        )
    assert left == 0
    assert (await _assert_exact(database, owner.workspace_id))[owner.workspace_id] == {"d": 1}

    # Deleting the workspace deletes its tags, its mailboxes and their links (ON
    # DELETE CASCADE), and the tags' counts; the other workspace's stay.
    async with database.transaction() as session:
        await session.execute(delete(Workspace).where(Workspace.id == owner.workspace_id))
    async with database.transaction() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(MailboxTagCount)
            .where(MailboxTagCount.tag_id.in_([a, b, c, d]))
        )
    assert left == 0
    assert await _assert_exact(database, other.workspace_id) == {other.workspace_id: {"a": 1}}


async def test_a_missing_trigger_is_caught(
    database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    """The comparison above fails when a write goes uncounted: with the delete
    trigger dropped (inside a transaction rolled back after), a deleted link leaves
    its tag's count one too high."""
    mailbox = await held_mailbox(owner.workspace_id, "one@tagcounts.test", tags=["a"])
    tag = await _tag_id(database, owner.workspace_id, "a")
    try:
        async with database.transaction() as session:
            drop = "DROP TRIGGER mailbox_tag_counts_delete"
            await session.execute(text(drop if database.is_sqlite else f"{drop} ON mailbox_tags"))
            await session.execute(delete(mailbox_tags).where(mailbox_tags.c.mailbox_id == mailbox))
            repository = MailboxRepository(session)
            assert await repository.count_tagged(owner.workspace_id, [tag]) == 1
            counted = await repository.count(
                repository.filtered(owner.workspace_id, MailboxFilters(tag=tag))
            )
            assert counted == 0
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert await _assert_exact(database, owner.workspace_id) == {owner.workspace_id: {"a": 1}}


async def test_a_tag_filters_total_comes_from_the_maintained_count(
    client: httpx.AsyncClient, database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    await held_mailbox(owner.workspace_id, "m0@tagcounts.test", tags=["a", "b"])
    await held_mailbox(owner.workspace_id, "m1@tagcounts.test", tags=["a"])
    await held_mailbox(owner.workspace_id, "m2@tagcounts.test", tags=["b"])
    a = await _tag_id(database, owner.workspace_id, "a")
    async with database.transaction() as session:
        # Skewed on purpose, where it can be told apart from a COUNT of the links
        # (one of its rows: on PostgreSQL each creating transaction wrote its own slot).
        slot = await session.scalar(
            select(func.min(MailboxTagCount.slot)).where(MailboxTagCount.tag_id == a)
        )
        await session.execute(
            update(MailboxTagCount)
            .where(MailboxTagCount.tag_id == a, MailboxTagCount.slot == slot)
            .values(n=MailboxTagCount.n + 40)
        )

    async def total(query: str) -> int:
        response = await client.get(f"/v1/mailboxes?limit=1&{query}", headers=owner.headers)
        assert response.status_code == 200, response.text
        n: int = response.json()["pagination"]["total"]
        return n

    # By name or by id: one tag, its maintained count.
    assert await total("tag=a") == 42
    assert await total(f"tag={a}") == 42
    # A tag of no mailbox: none.
    assert await total("tag=nothing") == 0
    # Another filter beside the tag: the mailboxes are counted.
    assert await total("tag=a&provider=custom") == 2

    async def counted(tag: str, tags: list[str]) -> int:
        async with database.transaction() as session:
            filters = MailboxFilters(tag=tag, tags=tags)
            return await MailboxRepository(session).count_matching(owner.workspace_id, filters)

    # Several names (an export's selection) that match one tag: still its count.
    assert await counted("a", [a]) == 42
    assert await counted("a", ["nothing"]) == 42
    # Two tags: m0 carries both and counts once, so the links are counted.
    assert await counted("a", ["b"]) == 3


async def test_a_dense_and_a_sparse_tag_give_the_same_pages(
    database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    """A tag on many of the workspace's mailboxes is read by probing each mailbox's
    links, a rarer one by reading its links first (TagMatch.dense): only the plan
    differs, never the page or the count."""
    for i in range(7):
        tags = ["a", "b"] if i % 3 == 0 else ["a"] if i % 2 else ["b"]
        await held_mailbox(owner.workspace_id, f"m{i}@dense.test", tags=tags)
    async with database.transaction() as session:
        repository = MailboxRepository(session)
        for names in (["a"], ["b"], ["a", "b"]):
            found = await repository.match_tags(owner.workspace_id, names)
            assert found.dense  # on 2% of the workspace or more
            assert found.workspace_total == 7
            sparse = replace(found, links=0)
            assert not sparse.dense
            filters = MailboxFilters(tags=names)
            seen = []
            for tagged in (found, sparse):
                for page in (Page(limit=2, skip=0), Page(limit=2, skip=2), Page(limit=50, skip=0)):
                    listed, more, _ = await repository.newest_listings(
                        owner.workspace_id, filters, page, tagged=tagged
                    )
                    seen.append(([m.email for m in listed], more))
                with_status = MailboxFilters(tags=names, status="inactive")
                seen.append(
                    await repository.count_matching(owner.workspace_id, with_status, tagged)
                )
            assert seen[: len(seen) // 2] == seen[len(seen) // 2 :], names
            expected = {"a": {1, 3, 5, 0, 6}, "b": {0, 2, 3, 4, 6}}
            emails = {f"m{i}@dense.test" for n in names for i in expected[n]}
            assert set(seen[2][0]) == emails
            assert seen[3] == len(emails)  # every one is still "inactive"
