"""The sweeper that re-enqueues lost single tests reads them from a partial index
(migration 0023), not from every pending test: a running bulk job's thousands of
pending tests are not its to find, and it used to fetch each of them once a minute."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.mailboxes import service
from mailfleet.models import ConnectionTest
from tests.conftest import Account, HeldMailbox
from tests.plans import query_plan, sent_sql


async def test_the_sweeper_reads_only_unqueued_tests_oldest_first(
    database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    # held_mailbox's tests belong to a (missing) bulk job: not the sweeper's.
    ids = [await held_mailbox(owner.workspace_id, f"sweep.{i}@fleet.test") for i in range(5)]
    now = utcnow()
    async with database.transaction() as session:
        tests = {
            mailbox_id: test_id
            for test_id, mailbox_id in (
                await session.execute(
                    ConnectionTest.__table__.select()
                    .with_only_columns(ConnectionTest.id, ConnectionTest.mailbox_id)
                    .where(ConnectionTest.mailbox_id.in_(ids))
                )
            ).all()
        }
        lost_new, lost_old, done, owned, _ = (tests[mailbox_id] for mailbox_id in ids)
        # Two lost single tests (the newer created first), one finished, two a job's.
        for test_id, age in ((lost_new, 1), (lost_old, 60)):
            await session.execute(
                update(ConnectionTest)
                .where(ConnectionTest.id == test_id)
                .values(job_id=None, created_at=now - timedelta(minutes=age))
            )
        await session.execute(
            update(ConnectionTest)
            .where(ConnectionTest.id == done)
            .values(job_id=None, status="success", finished_at=now)
        )
        found = [test_id for test_id, _ in await service.pending_test_ids(session)]
        assert owned not in found
        assert [t for t in found if t in tests.values()] == [lost_old, lost_new]

        # And it finds them through the partial index. The query as it is sent (only
        # its LIMIT bound): SQLite picks a partial index from the statement's text,
        # before any value is bound.
        query = service.pending_test_ids_query(1000)
        assert "'pending'" in sent_sql(query, is_sqlite=database.is_sqlite)
        plan = await query_plan(session, query, is_sqlite=database.is_sqlite)
    assert "ix_connection_tests_unqueued" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # SQLite: in the index's order, no sort
    assert "Sort" not in plan, plan  # PostgreSQL
