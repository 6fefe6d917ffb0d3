"""Hosted mailboxes, email forwarding and catch-all: rows that Postfix and Dovecot
read through the views of migration 0009, so a change takes effect at the mail
server's next lookup, without a reload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.domains.repository import DomainRepository
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Conflict, MailfleetError, ValidationFailed
from mailfleet.kit.sql import unindexed
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.mailserver.passwords import dovecot_hash, generate_password
from mailfleet.mailserver.schemas import (
    CatchAllOut,
    EmailForwardingIn,
    EmailForwardingOut,
    HostedMailboxIn,
    HostedMailboxResult,
    HostedMailOut,
    HostedUpdateIn,
)
from mailfleet.models import DkimKey, DkimKeyStatus, Domain, Mailbox

log = logging.getLogger(__name__)

HOSTED_PROVIDER = "mailfleet"


def require_self_hosted(domain: Domain) -> None:
    if domain.mail_provider != "self-hosted":
        raise Conflict(
            f"{domain.name} gets its mail from {domain.mail_provider!r}, not from Mailfleet: "
            "only domains connected with mailProvider 'self-hosted' have hosted mailboxes",
            reason="DOMAIN_NOT_SELF_HOSTED",
        )


def display_name(first: str, last: str) -> str:
    return f"{first} {last}".strip()


async def _hash(password: str) -> str:
    # Argon2 costs ~20 ms of CPU: off the event loop.
    return await asyncio.to_thread(dovecot_hash, password)


async def create_hosted_mailboxes(
    session: AsyncSession,
    settings: Settings,
    keyring: Keyring,
    domain: Domain,
    items: list[HostedMailboxIn],
) -> list[HostedMailboxResult]:
    """One result per item, in order: a failed item (duplicate address, no seat left,
    unknown pool) is reported and never stops the others."""
    require_self_hosted(domain)
    emails = [f"{item.username}@{domain.name}" for item in items]
    existing = set(
        await session.scalars(
            select(Mailbox.email).where(
                Mailbox.workspace_id == domain.workspace_id, Mailbox.email.in_(emails)
            )
        )
    )
    seen: set[str] = set()
    results: list[HostedMailboxResult] = []
    host = settings.mail_host
    for index, (item, email) in enumerate(zip(items, emails, strict=True)):
        result = HostedMailboxResult(
            index=index, username=item.username, email=email, status="failed"
        )
        results.append(result)
        if email in existing or email in seen:
            result.error = {"code": "CONFLICT", "message": f"{email} already exists"}
            continue
        seen.add(email)
        generated = item.password is None
        password = item.password or generate_password()
        try:
            if item.pool_id is not None:
                await mailboxes.get_pool(session, domain.workspace_id, item.pool_id)
            create = MailboxCreate(
                email=email,
                display_name=display_name(item.first_name, item.last_name) or item.username,
                provider=HOSTED_PROVIDER,
                smtp={
                    "host": host,
                    "port": settings.mail_submission_port,
                    "secure": True,
                    "username": email,
                    "password": password,
                },
                imap={
                    "host": host,
                    "port": settings.mail_imaps_port,
                    "secure": True,
                    "username": email,
                    "password": password,
                },
                daily_send_limit=item.daily_send_limit,
                tags=item.tags,
                pool_id=item.pool_id,
            )
            # The mail server hands out this login itself: active at once, nothing to probe.
            mailbox = await mailboxes.create_mailbox(
                session, keyring, domain.workspace_id, create, verify=False
            )
        except MailfleetError as exc:
            result.error = exc.to_error_body()
            continue
        mailbox.hosted_domain_id = domain.id
        mailbox.first_name = item.first_name
        mailbox.last_name = item.last_name
        mailbox.password_hash = await _hash(password)
        mailbox.quota_bytes = settings.mail_default_quota_mb * 1024 * 1024
        mailbox.last_verified_at = utcnow()
        await session.flush()
        result.status = "created"
        result.mailbox_id = mailbox.id
        result.password = password if generated else None
    return results


async def update_hosted_mailbox(
    session: AsyncSession,
    keyring: Keyring,
    mailbox: Mailbox,
    data: HostedUpdateIn,
    *,
    servers_given: Sequence[str] = (),
) -> str | None:
    """Names and password of a hosted mailbox; the new password is returned when
    Mailfleet generated it. Dovecot reads the hash at the next login: no restart.

    `servers_given` names the `smtp`/`imap` fields of the request: a hosted mailbox's
    servers are Mailfleet's own, and its password changes only here (hash included)."""
    if mailbox.hosted_domain_id is not None and servers_given:
        field = servers_given[0]
        raise ValidationFailed.for_field(
            field,
            f"{field} of a hosted mailbox is Mailfleet's own mail server; change the "
            "password with password or resetPassword",
        )
    if mailbox.hosted_domain_id is None:
        for field, value in (
            ("firstName", data.first_name),
            ("lastName", data.last_name),
            ("password", data.password),
        ):
            if value is not None:
                raise ValidationFailed.for_field(
                    field, f"{field} applies to hosted mailboxes only; use smtp and imap here"
                )
        if data.reset_password:
            raise ValidationFailed.for_field(
                "resetPassword", "resetPassword applies to hosted mailboxes only"
            )
        return None
    if data.first_name is not None:
        mailbox.first_name = data.first_name.strip()
    if data.last_name is not None:
        mailbox.last_name = data.last_name.strip()
    if data.first_name is not None or data.last_name is not None:
        mailbox.display_name = display_name(mailbox.first_name or "", mailbox.last_name or "")
    generated = None
    password = data.password
    if data.reset_password:
        password = generated = generate_password()
    if password is not None:
        ciphertext = keyring.encrypt(password)
        mailbox.smtp_password_enc = ciphertext
        mailbox.imap_password_enc = ciphertext
        mailbox.password_hash = await _hash(password)
    mailbox.updated_at = utcnow()
    await session.flush()
    return generated


def domain_mailboxes_query(domain: Domain, mailbox_ids: list[str] | None) -> Select[Any]:
    """The domain's hosted mailboxes (those of `mailbox_ids`), by email: found through
    ix_mailboxes_hosted_domain_id. Their workspace is only checked on each
    (`unindexed`): SQLite, asked for them in email order, walked the workspace's
    every mailbox through its (workspace_id, email) index instead."""
    query = select(Mailbox).where(
        unindexed(Mailbox.workspace_id, type_=Mailbox.workspace_id.type) == domain.workspace_id,
        Mailbox.hosted_domain_id == domain.id,
    )
    if mailbox_ids is not None:
        query = query.where(Mailbox.id.in_(mailbox_ids))
    return query.order_by(Mailbox.email)


def forwarding_of_query(address: str) -> Select[str | None]:
    """Where the hosted mailbox `address` forwards to (if it is one), read through its
    domain: a hosted mailbox's address is on its hosted domain's name. By the address
    alone SQLite scanned every mailbox of every workspace."""
    hosted_domain = select(Domain.id).where(Domain.name == address.rsplit("@", 1)[1])
    return select(Mailbox.forward_to).where(
        Mailbox.hosted_domain_id == hosted_domain.scalar_subquery(), Mailbox.email == address
    )


async def _domain_mailboxes(
    session: AsyncSession, domain: Domain, mailbox_ids: list[str] | None
) -> list[Mailbox]:
    found = list(await session.scalars(domain_mailboxes_query(domain, mailbox_ids)))
    if mailbox_ids is not None:
        missing = sorted(set(mailbox_ids) - {mailbox.id for mailbox in found})
        if missing:
            raise ValidationFailed.for_field(
                "mailboxIds", f"not hosted mailboxes of {domain.name}: {', '.join(missing)}"
            )
    return found


async def _owned_addresses(session: AsyncSession, domain: Domain) -> set[str]:
    return set(
        await session.scalars(select(Mailbox.email).where(Mailbox.hosted_domain_id == domain.id))
    )


async def set_email_forwarding(
    session: AsyncSession, domain: Domain, data: EmailForwardingIn
) -> list[Mailbox]:
    require_self_hosted(domain)
    targets = await _domain_mailboxes(session, domain, data.mailbox_ids)
    if not targets:
        raise ValidationFailed.for_field("mailboxIds", f"{domain.name} has no hosted mailbox")
    if data.forward_to in {mailbox.email for mailbox in targets}:
        raise ValidationFailed.for_field(
            "forwardTo", "forwardTo is one of the forwarded mailboxes: mail would loop"
        )
    onward = await session.scalar(forwarding_of_query(data.forward_to))
    if onward is not None and onward in {mailbox.email for mailbox in targets}:
        raise ValidationFailed.for_field(
            "forwardTo", f"{data.forward_to} forwards back to {onward}: mail would loop"
        )
    forward_domain = data.forward_to.rsplit("@", 1)[1]
    if forward_domain == domain.name and data.forward_to not in await _owned_addresses(
        session, domain
    ):
        raise ValidationFailed.for_field(
            "forwardTo", f"no mailbox owns {data.forward_to}; mail forwarded there would bounce"
        )
    for mailbox in targets:
        mailbox.forward_to = data.forward_to
        mailbox.forward_keep_copy = data.keep_copy
        mailbox.updated_at = utcnow()
    await session.flush()
    return targets


async def remove_email_forwarding(
    session: AsyncSession, domain: Domain, mailbox_ids: list[str] | None
) -> int:
    require_self_hosted(domain)
    targets = await _domain_mailboxes(session, domain, mailbox_ids)
    changed = 0
    for mailbox in targets:
        if mailbox.forward_to is not None:
            mailbox.forward_to = None
            mailbox.forward_keep_copy = True
            changed += 1
    await session.flush()
    return changed


async def set_catch_all(session: AsyncSession, domain: Domain, destination: str) -> Domain:
    require_self_hosted(domain)
    if destination.rsplit("@", 1)[1] == domain.name and destination not in await _owned_addresses(
        session, domain
    ):
        # Nobody owns it, so the catch-all itself would take it: a loop.
        raise ValidationFailed.for_field(
            "destination",
            f"no mailbox owns {destination}: the catch-all would send its mail back to itself",
        )
    domain.catch_all_destination = destination
    domain.updated_at = utcnow()
    await session.flush()
    return domain


async def remove_catch_all(session: AsyncSession, domain: Domain) -> Domain:
    require_self_hosted(domain)
    domain.catch_all_destination = None
    domain.updated_at = utcnow()
    await session.flush()
    return domain


async def hosted_mail(session: AsyncSession, domain: Domain) -> HostedMailOut | None:
    """Forwarding (grouped by target) and catch-all of a self-hosted domain."""
    if domain.mail_provider != "self-hosted":
        return None
    groups: dict[tuple[str, bool], list[str]] = {}
    rows = await session.execute(
        select(Mailbox.id, Mailbox.forward_to, Mailbox.forward_keep_copy)
        .where(Mailbox.hosted_domain_id == domain.id, Mailbox.forward_to.is_not(None))
        .order_by(Mailbox.email)
    )
    for mailbox_id, forward_to, keep_copy in rows:
        groups.setdefault((str(forward_to), bool(keep_copy)), []).append(mailbox_id)
    return HostedMailOut(
        email_forwarding=[
            EmailForwardingOut(forward_to=target, keep_copy=keep, mailbox_ids=ids)
            for (target, keep), ids in groups.items()
        ],
        catch_all=CatchAllOut(destination=domain.catch_all_destination)
        if domain.catch_all_destination
        else None,
    )


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    private_pem: bytes


async def signing_key(
    session: AsyncSession, keyring: Keyring, domain_name: str
) -> SigningKey | None:
    """The active DKIM key of a self-hosted domain, read (and decrypted) when a message
    is signed, so a rotation takes effect at the next message."""
    row = await session.execute(
        select(DkimKey.selector, DkimKey.private_key_enc)
        .join(Domain, Domain.id == DkimKey.domain_id)
        .where(
            Domain.name == domain_name,
            Domain.mail_provider == "self-hosted",
            DkimKey.status == DkimKeyStatus.ACTIVE,
        )
        .order_by(DkimKey.activated_at.desc())
        .limit(1)
    )
    found = row.first()
    if found is None:
        return None
    selector, private_enc = found
    return SigningKey(domain_name, selector, keyring.decrypt(private_enc).encode())


async def get_hosted_domain(session: AsyncSession, workspace_id: str, domain_id: str) -> Domain:
    return await DomainRepository(session).get(workspace_id, domain_id)


def summary(results: list[HostedMailboxResult]) -> dict[str, Any]:
    created = sum(1 for result in results if result.status == "created")
    return {"total": len(results), "created": created, "failed": len(results) - created}
