"""Hosted mail on disk: where a mailbox's maildir lives, how full it is, and the
mail of deleted mailboxes kept for the retention period, then removed.

The mailboxes area schedules a purge as it deletes a hosted mailbox's row; this
module imports nothing from mailboxes, so that edge has no way back.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.models import Mailbox, MailPurge

log = logging.getLogger(__name__)


def maildir_of(domain_name: str, mailbox_id: str) -> str:
    """Relative to the storage dir; the id (not the address) so a re-created address
    never sees a deleted mailbox's mail. The mailserver_mailboxes view says the same."""
    return f"{domain_name}/{mailbox_id}"


async def schedule_mail_purge(session: AsyncSession, settings: Settings, mailbox: Mailbox) -> None:
    """Called as a hosted mailbox's row goes: its login goes with it at once (the views
    no longer list it); its mail stays for the retention, then `mailserver run` removes it."""
    domain_name = mailbox.email.rsplit("@", 1)[1]
    session.add(
        MailPurge(
            workspace_id=mailbox.workspace_id,
            email=mailbox.email,
            maildir=maildir_of(domain_name, mailbox.id),
            purge_after=utcnow() + timedelta(days=settings.mail_deleted_retention_days),
        )
    )
    await session.flush()


async def purge_due_mail(session: AsyncSession, storage: Path, limit: int = 100) -> int:
    """Remove the mail of deleted mailboxes whose retention has passed."""
    due = list(
        await session.scalars(
            select(MailPurge)
            .where(MailPurge.purge_after <= utcnow())
            .order_by(MailPurge.purge_after)
            .limit(limit)
        )
    )
    for purge in due:
        await asyncio.to_thread(_remove_maildir, storage, purge.maildir)
        log.info("removed the mail of deleted mailbox %s", purge.maildir)
        await session.delete(purge)
    await session.flush()
    return len(due)


def _remove_maildir(storage: Path, relative: str) -> None:
    root = storage.resolve()
    target = (root / relative).resolve()
    if target.is_relative_to(root) and target != root:
        shutil.rmtree(target, ignore_errors=True)


def quota_used_bytes(settings: Settings, mailbox: Mailbox) -> int | None:
    """Bytes in the mailbox per Dovecot's maildir++ quota file, when this process
    sees the mail storage (the embedded server); None otherwise."""
    if mailbox.hosted_domain_id is None:
        return None
    home = settings.resolved_mail_storage_dir / maildir_of(mailbox.domain, mailbox.id)
    if not home.is_dir():
        return None if not settings.resolved_mail_storage_dir.is_dir() else 0
    size_file = home / "Maildir" / "maildirsize"
    try:
        lines = size_file.read_text().splitlines()[1:]
    except OSError:
        return 0
    used = 0
    for line in lines:
        parts = line.split()
        if parts and parts[0].lstrip("-").isdigit():
            used += int(parts[0])
    return max(used, 0)
