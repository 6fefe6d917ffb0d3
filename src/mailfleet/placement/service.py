"""Placement tests: seeds, creating and canceling a test, its answer. Flushes, never commits.

A test is a row per (sender, seed) pair, made when the test is created, each with
its own tracking code; the workflow (workflows.py) sends them, reads the seeds'
folders and fills in where each landed. Every number in a test's answer is a
count of those rows.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.db import after_commit
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.errors import Conflict, ValidationFailed
from mailfleet.kit.pagination import Page
from mailfleet.mail.discovery import Discoverer
from mailfleet.mailboxes.repository import MailboxRepository
from mailfleet.models import (
    Mailbox,
    MailboxStatus,
    PlacementFolder,
    PlacementProvider,
    PlacementResult,
    PlacementSendStatus,
    PlacementTest,
    PlacementTestStatus,
)
from mailfleet.placement import repository
from mailfleet.placement.messages import tracking_code
from mailfleet.placement.repository import (
    UNFINISHED,
    PlacementResultRepository,
    PlacementTestRepository,
)
from mailfleet.placement.schemas import (
    MAX_PAIRS,
    AuthOut,
    DomainAuthOut,
    PlacementResultOut,
    PlacementSummary,
    PlacementTestBrief,
    PlacementTestIn,
    PlacementTestOut,
    ProviderSummary,
    SeedOut,
    SenderSummary,
    SummaryOut,
)
from mailfleet.webhooks import events
from mailfleet.webhooks.service import emit

PLACEMENT_QUEUE = "placement"
PROVIDERS = frozenset(PlacementProvider)
FOLDERS = (
    PlacementFolder.INBOX,
    PlacementFolder.SPAM,
    PlacementFolder.PROMOTIONS,
    PlacementFolder.OTHER,
    PlacementFolder.MISSING,
)
# Provider look-ups (MX) at once, for a test's or a listing's seeds.
_LOOKUPS_AT_ONCE = 20


def workflow_id(test_id: str) -> str:
    return f"placement-test-{test_id}"


async def enqueue_test(test_id: str) -> None:
    await jobs.enqueue_named(
        PLACEMENT_QUEUE,
        "mailfleet.placement.workflows:run_placement_test",
        test_id,
        workflow_id=workflow_id(test_id),
    )


# ---------------------------------------------------------------- seeds


async def providers_of(discoverer: Discoverer, mailboxes: Iterable[Mailbox]) -> dict[str, str]:
    """{mailbox id: google, microsoft, yahoo, zoho, icloud or other}, from the mailbox's
    provider field, its address, its IMAP/SMTP hosts and its domain's MX records."""
    keys: dict[tuple[str, str, str, str], list[str]] = {}
    for mailbox in mailboxes:
        key = (mailbox.domain, mailbox.provider or "", mailbox.imap_host, mailbox.smtp_host)
        keys.setdefault(key, []).append(mailbox.id)
    gate = asyncio.Semaphore(_LOOKUPS_AT_ONCE)

    async def one(key: tuple[str, str, str, str]) -> str:
        domain, provider, imap_host, smtp_host = key
        async with gate:
            try:
                found = await discoverer.mail_provider(
                    f"seed@{domain}", provider=provider, hosts=(imap_host, smtp_host)
                )
            except ValueError:
                found = None
        return found if found in PROVIDERS else PlacementProvider.OTHER

    ordered = list(keys)
    found = await asyncio.gather(*(one(key) for key in ordered))
    return {
        mailbox_id: provider
        for key, provider in zip(ordered, found, strict=True)
        for mailbox_id in keys[key]
    }


async def list_seeds(
    session: AsyncSession, discoverer: Discoverer, workspace_id: str, page: Page
) -> tuple[list[SeedOut], int]:
    seeds, total = await MailboxRepository(session).paginate(
        repository.seeds_query(workspace_id), page, Mailbox.email, Mailbox.id
    )
    providers = await providers_of(discoverer, seeds)
    return [
        SeedOut(mailbox_id=m.id, email=m.email, provider=providers[m.id], status=m.status)
        for m in seeds
    ], total


# ---------------------------------------------------------------- creating


async def _active(
    session: AsyncSession, workspace_id: str, ids: Sequence[str], field: str
) -> list[Mailbox]:
    found = await repository.mailboxes_by_id(session, workspace_id, ids)
    for mailbox_id in ids:
        mailbox = found.get(mailbox_id)
        if mailbox is None:
            raise ValidationFailed.for_field(field, f"mailbox {mailbox_id} not found")
        if mailbox.status != MailboxStatus.ACTIVE:
            raise ValidationFailed.for_field(
                field, f"mailbox {mailbox_id} ({mailbox.email}) is {mailbox.status}, not active"
            )
    return [found[mailbox_id] for mailbox_id in ids]


def _new_code() -> str:
    # Lowercase letters and digits: IMAP header searches are case-insensitive anyway.
    return "mfp" + secrets.token_hex(6)


async def create_test(
    session: AsyncSession, discoverer: Discoverer, workspace_id: str, body: PlacementTestIn
) -> PlacementTest:
    """Validate, make one result row per sender and seed, and start the workflow
    once the transaction commits. Bad input raises before anything is written."""
    senders = await _active(session, workspace_id, body.from_mailbox_ids, "fromMailboxIds")
    sender_ids = {m.id for m in senders}
    if body.seed_mailbox_ids is None:
        seeds = [
            m
            for m in await repository.seeds_of(session, workspace_id)
            if m.status == MailboxStatus.ACTIVE and m.id not in sender_ids
        ]
        if not seeds:
            raise ValidationFailed.for_field(
                "seedMailboxIds",
                "the workspace has no active seed that is not a sender: mark mailboxes "
                "with placementSeed or list seedMailboxIds",
            )
    else:
        both = [m for m in body.seed_mailbox_ids if m in sender_ids]
        if both:
            raise ValidationFailed.for_field(
                "seedMailboxIds", f"mailbox {both[0]} is also a sender; a seed cannot be one"
            )
        if not body.seed_mailbox_ids:
            raise ValidationFailed.for_field("seedMailboxIds", "give at least one seed")
        seeds = await _active(session, workspace_id, body.seed_mailbox_ids, "seedMailboxIds")
    pairs = len(senders) * len(seeds)
    if pairs > MAX_PAIRS:
        message = (
            f"{len(senders)} senders x {len(seeds)} seeds make {pairs} messages; "
            f"at most {MAX_PAIRS}"
        )
        raise ValidationFailed(
            message,
            [
                {"field": "seedMailboxIds", "message": message},
                {"field": "fromMailboxIds", "message": message},
            ],
        )
    providers = await providers_of(discoverer, seeds)
    test = PlacementTest(
        workspace_id=workspace_id,
        name=body.name,
        code=_new_code(),
        subject=body.subject,
        text=body.text,
        html=body.html,
        delivery_mode=body.delivery_mode,
        timeout_minutes=body.timeout_minutes,
        status=PlacementTestStatus.SENDING,
    )
    session.add(test)
    await session.flush()
    seq = 0
    for sender in senders:
        for seed in seeds:
            seq += 1
            code = tracking_code(test.code, seq)
            session.add(
                PlacementResult(
                    test_id=test.id,
                    seq=seq,
                    sender_id=sender.id,
                    sender_email=sender.email,
                    seed_id=seed.id,
                    seed_email=seed.email,
                    provider=providers[seed.id],
                    tracking_code=code,
                    message_id=f"<{code}.{secrets.token_hex(4)}@{sender.domain}>",
                    status=PlacementSendStatus.PLANNED,
                )
            )
    await session.flush()
    test_id = test.id
    after_commit(session, lambda: enqueue_test(test_id))
    return test


# ---------------------------------------------------------------- reading


async def get_test(session: AsyncSession, workspace_id: str, test_id: str) -> PlacementTest:
    return await PlacementTestRepository(session).get(workspace_id, test_id)


async def list_tests(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[PlacementTestBrief], int]:
    tests, total = await PlacementTestRepository(session).newest_first(
        PlacementTestRepository.owned_by(workspace_id), page
    )
    results = await PlacementResultRepository(session).of_tests([t.id for t in tests])
    by_test: dict[str, list[PlacementResult]] = {}
    for result in results:
        by_test.setdefault(result.test_id, []).append(result)
    return [brief(test, by_test.get(test.id, [])) for test in tests], total


def _rate(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def summarize(results: Sequence[PlacementResult]) -> dict[str, Any]:
    """Counts per folder, `waiting` (sent, not found yet), `failed` (never sent), and
    each folder's rate in percent of all messages."""
    counts = {folder.value: 0 for folder in FOLDERS}
    waiting = failed = 0
    for result in results:
        if result.folder is not None:
            counts[result.folder] = counts.get(result.folder, 0) + 1
        elif result.status == PlacementSendStatus.FAILED:
            failed += 1
        else:
            waiting += 1
    total = len(results)
    return {
        "messages": total,
        **counts,
        "waiting": waiting,
        "failed": failed,
        **{f"{folder.value}_rate": _rate(counts[folder.value], total) for folder in FOLDERS},
    }


def _check_status(setup: dict[str, Any] | None, name: str) -> str | None:
    check = (setup or {}).get(name)
    if isinstance(check, dict):
        status = check.get("status")
        return str(status) if status is not None else None
    return None


def domain_auth(mailbox: Mailbox | None, email: str) -> DomainAuthOut:
    """The sender domain's SPF, DKIM and DMARC as the mailbox's latest DNS check saw them."""
    setup = mailbox.setup_status if mailbox is not None else None
    checked = (setup or {}).get("checkedAt")
    return DomainAuthOut(
        domain=mailbox.domain if mailbox is not None else email.rsplit("@", 1)[-1],
        spf=_check_status(setup, "spf"),
        dkim=_check_status(setup, "dkim"),
        dmarc=_check_status(setup, "dmarc"),
        checked_at=str(checked) if checked else None,
    )


def brief(test: PlacementTest, results: Sequence[PlacementResult]) -> PlacementTestBrief:
    return PlacementTestBrief(
        id=test.id,
        name=test.name,
        status=PlacementTestStatus(test.status),
        test_code=test.code,
        subject=test.subject,
        delivery_mode=test.delivery_mode,
        timeout_minutes=test.timeout_minutes,
        senders=len({r.sender_id for r in results}),
        seeds=len({r.seed_id for r in results}),
        overall=PlacementSummary(**summarize(results)),
        created_at=test.created_at,
        sent_at=test.sent_at,
        completed_at=test.completed_at,
        canceled_at=test.canceled_at,
    )


async def test_out(session: AsyncSession, test: PlacementTest) -> PlacementTestOut:
    results = await PlacementResultRepository(session).of_tests([test.id])
    sender_ids = list(dict.fromkeys(r.sender_id for r in results))
    mailboxes = await repository.mailboxes_by_id(session, test.workspace_id, sender_ids)
    by_provider: dict[str, list[PlacementResult]] = {}
    by_sender: dict[str, list[PlacementResult]] = {}
    for result in results:
        by_provider.setdefault(result.provider, []).append(result)
        by_sender.setdefault(result.sender_id, []).append(result)
    summary = SummaryOut(
        overall=PlacementSummary(**summarize(results)),
        providers=[
            ProviderSummary(provider=provider, **summarize(rows))
            for provider, rows in sorted(by_provider.items())
        ],
        senders=[
            SenderSummary(
                mailbox_id=sender_id,
                email=rows[0].sender_email,
                domain_auth=domain_auth(mailboxes.get(sender_id), rows[0].sender_email),
                **summarize(rows),
            )
            for sender_id, rows in by_sender.items()
        ],
    )
    return PlacementTestOut(
        **brief(test, results).model_dump(),
        summary=summary,
        results=[
            PlacementResultOut(
                sender_id=r.sender_id,
                sender_email=r.sender_email,
                seed_id=r.seed_id,
                seed_email=r.seed_email,
                provider=r.provider,
                status=r.status,
                folder=r.folder,
                folder_name=r.folder_name,
                arrived_after_seconds=r.arrived_after_seconds,
                auth=AuthOut(spf=r.auth_spf, dkim=r.auth_dkim, dmarc=r.auth_dmarc),
                sent_at=r.sent_at,
                found_at=r.found_at,
                error=r.error,
            )
            for r in results
        ],
    )


# ---------------------------------------------------------------- canceling, finishing


async def cancel_test(session: AsyncSession, test: PlacementTest) -> PlacementTest:
    """Stop a running test: nothing more is sent or read; unsent messages are failed."""
    if test.status == PlacementTestStatus.CANCELED:
        return test
    if test.status not in UNFINISHED:
        raise Conflict(f"Placement test {test.id} is already {test.status}")
    now = utcnow()
    test.status = PlacementTestStatus.CANCELED
    test.canceled_at = now
    await session.execute(
        update(PlacementResult)
        .where(
            PlacementResult.test_id == test.id,
            PlacementResult.status == PlacementSendStatus.PLANNED,
        )
        .values(status=PlacementSendStatus.FAILED, error="Canceled before it was sent")
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return test


def deadline_of(test: PlacementTest, settings: Settings) -> datetime | None:
    """When the seeds stop being read: timeoutMinutes after the last send."""
    if test.sent_at is None:
        return None
    if settings.placement_timeout_seconds is not None:
        return test.sent_at + timedelta(seconds=settings.placement_timeout_seconds)
    return test.sent_at + timedelta(minutes=test.timeout_minutes)


async def complete_test(session: AsyncSession, test: PlacementTest) -> dict[str, Any]:
    """Every message not found is missing; the test is completed and says so by webhook
    (once: a replayed step finds it completed and only counts)."""
    completing = test.status != PlacementTestStatus.COMPLETED
    if completing:
        await session.execute(
            update(PlacementResult)
            .where(
                PlacementResult.test_id == test.id,
                PlacementResult.folder.is_(None),
                PlacementResult.status != PlacementSendStatus.FAILED,
            )
            .values(folder=PlacementFolder.MISSING)
            .execution_options(synchronize_session=False)
        )
        test.status = PlacementTestStatus.COMPLETED
        test.completed_at = utcnow()
        await session.flush()
    results = list(
        await session.scalars(select(PlacementResult).where(PlacementResult.test_id == test.id))
    )
    summary = summarize(results)
    if completing:
        data = {
            "testId": test.id,
            "name": test.name,
            "status": test.status,
            "completedAt": isoformat(test.completed_at) if test.completed_at else None,
            **{_camel(key): value for key, value in summary.items()},
        }
        await emit(session, test.workspace_id, events.PLACEMENT_TEST_COMPLETED, data)
    return summary


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
