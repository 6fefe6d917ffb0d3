"""The dashboard's count by provider, the placement seeds and the warmup report's
mailboxes are read through indexes (migration 0025, `unindexed`), not by walking a
workspace's every mailbox: on 100,000 mailboxes (SQLite) the overview took 366 ms,
the seeds 328 ms and an empty warmup report 186 ms that way."""

from __future__ import annotations

from sqlalchemy import update

from mailfleet.dashboard import service as dashboard
from mailfleet.db import Database
from mailfleet.kit.pagination import Page
from mailfleet.models import Mailbox, WarmupSettings
from mailfleet.placement import repository as placement
from mailfleet.warmup import service as warmup
from tests.conftest import Account, HeldMailbox
from tests.plans import query_plan, sent_sql


async def test_provider_counts_seeds_and_warmup_mailboxes_read_indexes(
    database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    ws = owner.workspace_id
    ids = [
        await held_mailbox(ws, email, provider=provider)
        for email, provider in (
            ("b.seed@fleet.test", "gmail"),
            ("a.seed@fleet.test", "gmail"),
            ("c.warm@fleet.test", "outlook"),
            ("d.plain@fleet.test", "gmail"),
        )
    ]
    seed_b, seed_a, warm, _ = ids
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox).where(Mailbox.id.in_([seed_a, seed_b])).values(placement_seed=True)
        )
        session.add(WarmupSettings(mailbox_id=warm, workspace_id=ws, enabled=True))
        await session.flush()

        # What each answers.
        providers = (await session.execute(dashboard.provider_counts_query(ws))).all()
        assert [tuple(row) for row in providers] == [("gmail", 3), ("outlook", 1)]
        seeds = placement.seeds_query(ws).order_by(Mailbox.email, Mailbox.id)
        assert [m.id for m in await session.scalars(seeds)] == [seed_a, seed_b]
        found, total = await warmup.analytics_mailboxes(session, ws, None, Page(limit=10, skip=0))
        assert ([m.id for m in found], total) == ([warm], 1)

        # How: the count by provider from its covering index; the seeds from their
        # partial index, in order (SQLite picks a partial index from the statement's
        # text: the predicate must be what is sent); the warmup report's mailboxes by
        # id, driven from the warmup settings, not down a workspace index.
        is_sqlite = database.is_sqlite
        plan = await query_plan(session, dashboard.provider_counts_query(ws), is_sqlite=is_sqlite)
        assert "ix_mailboxes_workspace_provider" in plan, plan
        assert "placement_seed IS" in sent_sql(seeds, is_sqlite=is_sqlite)
        plan = await query_plan(session, seeds, is_sqlite=is_sqlite)
        assert "ix_mailboxes_placement_seeds" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        assert "Sort" not in plan, plan
        if is_sqlite:
            for query in (
                warmup.analytics_mailboxes_query(ws, None),
                warmup.analytics_mailboxes_query(ws, [warm, seed_a]),
            ):
                plan = await query_plan(session, query, is_sqlite=True)
                assert "ix_mailboxes_workspace" not in plan, plan
                assert "sqlite_autoindex_mailboxes" in plan, plan
        await session.rollback()
