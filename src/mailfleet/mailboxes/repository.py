"""Mailbox, tag and pool look-ups, and the one mailbox filter query.

The listing (`GET /mailboxes`, DeepLead's inboxes) and the export selection
(CSV files, pushes to a platform) filter mailboxes the same way, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select

from mailfleet.kit.repository import Repository
from mailfleet.models import Mailbox, Pool, Tag, mailbox_tags


@dataclass(frozen=True)
class MailboxFilters:
    """Every filter given must match; `tag` and `tags` are tag ids or names, any matches."""

    status: str | None = None
    provider: str | None = None
    tag: str | None = None
    tags: Sequence[str] | None = None
    domain: str | None = None
    search: str | None = None
    pool_id: str | None = None


class MailboxRepository(Repository[Mailbox], model=Mailbox, noun="Mailbox"):
    @classmethod
    def filtered(cls, workspace_id: str, filters: MailboxFilters) -> Select[Any]:
        query = cls.owned_by(workspace_id)
        if filters.status:
            query = query.where(Mailbox.status == filters.status)
        if filters.pool_id:
            query = query.where(Mailbox.pool_id == filters.pool_id)
        if filters.provider:
            query = query.where(Mailbox.provider == filters.provider.lower())
        if filters.domain:
            query = query.where(Mailbox.domain == filters.domain.lower().rstrip("."))
        names = [*([filters.tag] if filters.tag else []), *(filters.tags or ())]
        if names:
            tagged = (
                select(mailbox_tags.c.mailbox_id)
                .join(Tag, Tag.id == mailbox_tags.c.tag_id)
                .where(
                    Tag.workspace_id == workspace_id, or_(Tag.id.in_(names), Tag.name.in_(names))
                )
            )
            query = query.where(Mailbox.id.in_(tagged))
        if filters.search:
            pattern = f"%{filters.search.lower()}%"
            query = query.where(
                or_(Mailbox.email.like(pattern), func.lower(Mailbox.display_name).like(pattern))
            )
        return query


class TagRepository(Repository[Tag], model=Tag, noun="Tag"): ...


class PoolRepository(Repository[Pool], model=Pool, noun="Pool"): ...
