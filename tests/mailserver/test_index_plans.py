"""A self-hosted domain's mailboxes, and the hosted mailbox a forward names, are read
through ix_mailboxes_hosted_domain_id, not by walking a workspace (or every mailbox):
SQLite, without statistics, chose the (workspace_id, email) index for the first, to
skip a sort, and scanned the table for the second."""

from __future__ import annotations

import pytest

from mailfleet.db import Database
from mailfleet.mailserver import service
from mailfleet.models import Domain
from tests.plans import query_plan


async def test_hosted_mailboxes_are_read_through_their_domain(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("PostgreSQL's planner has statistics; the walks were SQLite's")
    domain = Domain(id="d" * 24, workspace_id="w" * 24, name="hosted.test")
    async with database.transaction() as session:
        for query, through in (
            (service.domain_mailboxes_query(domain, None), "ix_mailboxes_hosted_domain_id"),
            (service.forwarding_of_query("ann@hosted.test"), "ix_mailboxes_hosted_domain_id"),
            # Chosen ones: by their ids.
            (service.domain_mailboxes_query(domain, ["m" * 24]), "sqlite_autoindex_mailboxes"),
        ):
            plan = await query_plan(session, query, is_sqlite=True)
            assert through in plan, plan
            assert "ix_mailboxes_workspace" not in plan, plan
            assert "SCAN mailboxes" not in plan, plan
