"""Placement test look-ups: the tests of a workspace, their results, the seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.kit.repository import Repository
from mailfleet.models import Mailbox, PlacementResult, PlacementTest, PlacementTestStatus

UNFINISHED = (PlacementTestStatus.SENDING, PlacementTestStatus.WAITING)


class PlacementTestRepository(
    Repository[PlacementTest], model=PlacementTest, noun="Placement test"
):
    @classmethod
    def unfinished(cls) -> Select[Any]:
        return cls.select().where(PlacementTest.status.in_(UNFINISHED))


class PlacementResultRepository(
    Repository[PlacementResult], model=PlacementResult, noun="Placement result", owner="test_id"
):
    async def of_tests(self, test_ids: Sequence[str]) -> list[PlacementResult]:
        """Every result of these tests, in sending order."""
        if not test_ids:
            return []
        rows = await self.session.scalars(
            self.select()
            .where(PlacementResult.test_id.in_(test_ids))
            .order_by(PlacementResult.test_id, PlacementResult.seq)
        )
        return list(rows)


def seeds_query(workspace_id: str) -> Select[Any]:
    return select(Mailbox).where(
        Mailbox.workspace_id == workspace_id, Mailbox.placement_seed.is_(True)
    )


async def seeds_of(session: AsyncSession, workspace_id: str) -> list[Mailbox]:
    rows = await session.scalars(seeds_query(workspace_id).order_by(Mailbox.email, Mailbox.id))
    return list(rows)


async def mailboxes_by_id(
    session: AsyncSession, workspace_id: str, ids: Sequence[str]
) -> dict[str, Mailbox]:
    if not ids:
        return {}
    rows = await session.scalars(
        select(Mailbox).where(Mailbox.workspace_id == workspace_id, Mailbox.id.in_(ids))
    )
    return {mailbox.id: mailbox for mailbox in rows}
