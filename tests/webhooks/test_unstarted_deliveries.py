"""The outbox sweeper reads the deliveries it re-enqueues from a partial index
(migration 0024), not from every pending delivery: one waiting between retries stays
pending for hours, and an endpoint that is down gathers thousands of them."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select, update

from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.models import WebhookDelivery
from mailfleet.webhooks import service
from tests.conftest import Account
from tests.plans import query_plan, sent_sql
from tests.servers.http_receiver import HttpReceiver
from tests.webhooks.conftest import register


async def test_the_sweeper_reads_only_unstarted_deliveries_oldest_first(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, database: Database
) -> None:
    await register(client, owner, receiver.url())
    now = utcnow()
    # Never committed: no enqueue runs and no scheduled sweep sees these rows.
    async with database.sessionmaker() as session:
        for n in range(5):
            await service.emit(session, owner.workspace_id, "mailbox.deleted", {"mailboxId": n})
        ids = list(
            await session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.workspace_id == owner.workspace_id)
                .order_by(WebhookDelivery.id)
            )
        )
        unstarted_new, unstarted_old, retrying, succeeded, cancelled = ids
        changes = {
            unstarted_new: {"created_at": now - timedelta(minutes=1)},
            unstarted_old: {"created_at": now - timedelta(minutes=60)},
            # Attempted once and waiting for its next try: its workflow owns it.
            retrying: {"attempt_count": 1, "created_at": now - timedelta(minutes=90)},
            succeeded: {"status": "succeeded", "attempt_count": 1},
            # Cancelled with its endpoint before any attempt.
            cancelled: {"status": "cancelled", "created_at": now - timedelta(minutes=120)},
        }
        for delivery_id, values in changes.items():
            await session.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
            )
        found = await service.unstarted_delivery_ids(session)
        assert [d for d in found if d in ids] == [unstarted_old, unstarted_new]

        # And it finds them through the partial index. The query as it is sent
        # (only its LIMIT bound): SQLite picks a partial index from the statement's
        # text, before any value is bound.
        query = service.unstarted_delivery_ids_query(1000)
        sent = sent_sql(query, is_sqlite=database.is_sqlite)
        assert "'pending'" in sent, sent
        assert "attempt_count = 0" in sent, sent
        plan = await query_plan(session, query, is_sqlite=database.is_sqlite)
        await session.rollback()
    assert "ix_webhook_deliveries_unstarted" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # SQLite: in the index's order, no sort
    assert "Sort" not in plan, plan  # PostgreSQL
