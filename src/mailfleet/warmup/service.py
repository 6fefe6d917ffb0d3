"""Warmup settings, states and analytics. Flushes, never commits.

A mailbox's warmup state is derived, with its reason, from its settings and the
mailbox: `paused` when warmup is off or the mailbox may not send (paused by its
owner, by billing, awaiting its test), `error` when a warmup login failed or the
mailbox's own test did, `ready` once the ramp reached dailyTarget, otherwise
`warming`. Every change of state emits `warmup.state_changed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import seats as billing
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict, NotFound, ValidationFailed
from mailfleet.kit.pagination import Page
from mailfleet.kit.sql import unindexed
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.repository import MailboxFilters, MailboxRepository
from mailfleet.models import (
    Mailbox,
    MailboxStatus,
    WarmupMessage,
    WarmupMessageStatus,
    WarmupSettings,
    WarmupState,
)
from mailfleet.warmup.schemas import (
    SendWindowOut,
    SkippedMailbox,
    WarmupAnalyticsOut,
    WarmupBulkIn,
    WarmupBulkOut,
    WarmupDay,
    WarmupSettingsIn,
    WarmupSettingsOut,
    WarmupTotals,
)
from mailfleet.webhooks import events
from mailfleet.webhooks.service import emit

log = logging.getLogger(__name__)

DEFAULT_ANALYTICS_DAYS = 14
# A sent message its receiver has not found within this long counts as missing.
MISSING_AFTER = timedelta(hours=24)


def local_day(settings: WarmupSettings, moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(settings.timezone)).date()


def ramp_day(settings: WarmupSettings, day: date) -> int:
    if settings.started_on is None:
        return 0
    return max(0, (day - settings.started_on).days)


def ramp_quota(settings: WarmupSettings, mailbox: Mailbox, day: date) -> int:
    """Warmup messages the mailbox sends on `day`: startPerDay, plus rampUpPerDay for
    each day since warmup started, up to dailyTarget and the mailbox's dailySendLimit."""
    ramped = settings.start_per_day + settings.ramp_up_per_day * ramp_day(settings, day)
    return max(0, min(settings.daily_target, ramped, mailbox.daily_send_limit))


def ramp_complete(settings: WarmupSettings, day: date) -> bool:
    ramped = settings.start_per_day + settings.ramp_up_per_day * ramp_day(settings, day)
    return ramped >= settings.daily_target


def settings_out(settings: WarmupSettings, mailbox: Mailbox) -> WarmupSettingsOut:
    return WarmupSettingsOut(
        mailbox_id=mailbox.id,
        email=mailbox.email,
        enabled=settings.enabled,
        start_per_day=settings.start_per_day,
        ramp_up_per_day=settings.ramp_up_per_day,
        daily_target=settings.daily_target,
        reply_rate=settings.reply_rate,
        send_window=SendWindowOut(
            start=settings.window_start, end=settings.window_end, timezone=settings.timezone
        ),
        state=settings.state,
        reason=settings.state_reason,
        started_on=settings.started_on,
        updated_at=settings.updated_at,
    )


def _defaults(mailbox: Mailbox) -> WarmupSettings:
    return WarmupSettings(
        mailbox_id=mailbox.id,
        workspace_id=mailbox.workspace_id,
        enabled=False,
        start_per_day=5,
        ramp_up_per_day=1,
        # The default target never exceeds what the mailbox may send.
        daily_target=min(20, mailbox.daily_send_limit),
        reply_rate=30,
        window_start="08:00",
        window_end="18:00",
        timezone="UTC",
        state=WarmupState.PAUSED,
        state_reason="Warmup is turned off",
    )


async def settings_for(session: AsyncSession, mailbox: Mailbox) -> WarmupSettings:
    """The mailbox's settings row, created with the defaults on first use."""
    settings = await session.get(WarmupSettings, mailbox.id)
    if settings is None:
        settings = _defaults(mailbox)
        session.add(settings)
        await session.flush()
    return settings


async def get_settings(
    session: AsyncSession, workspace_id: str, mailbox_id: str
) -> tuple[WarmupSettings, Mailbox]:
    mailbox = await mailboxes.get_mailbox(session, workspace_id, mailbox_id)
    return await settings_for(session, mailbox), mailbox


async def blocked_reason(session: AsyncSession, mailbox: Mailbox) -> str | None:
    """Why the mailbox cannot warm now, or None."""
    if mailbox.status == MailboxStatus.INACTIVE:
        return "The mailbox is awaiting its connection test"
    if mailbox.status == MailboxStatus.ERROR:
        detail = mailbox.last_error or "see its connection test"
        return f"The mailbox failed its connection test: {detail}"
    if await billing.mailbox_suspended(session, mailbox.id):
        return "Billing paused this mailbox for an unpaid renewal"
    if mailbox.status == MailboxStatus.PAUSED or not mailbox.sending_enabled:
        return "Sending is paused for this mailbox"
    return None


async def set_state(
    session: AsyncSession,
    settings: WarmupSettings,
    mailbox: Mailbox,
    state: str,
    reason: str | None,
) -> bool:
    """Change the state (emitting `warmup.state_changed`); False when nothing changed."""
    if settings.state == state and settings.state_reason == reason:
        return False
    previous = settings.state
    settings.state = state
    settings.state_reason = reason
    settings.updated_at = utcnow()
    await session.flush()
    if previous != state:
        await emit(
            session,
            mailbox.workspace_id,
            events.WARMUP_STATE_CHANGED,
            {
                "mailboxId": mailbox.id,
                "email": mailbox.email,
                "state": state,
                "previousState": previous,
                "reason": reason,
            },
        )
        log.info("warmup of mailbox %s: %s -> %s", mailbox.id, previous, state)
    return True


async def refresh_state(
    session: AsyncSession, settings: WarmupSettings, mailbox: Mailbox, now: datetime
) -> str:
    """Derive the state from the settings and the mailbox; a warmup login error
    stays until warmup is re-enabled or the mailbox passes a new connection test."""
    if not settings.enabled:
        await set_state(session, settings, mailbox, WarmupState.PAUSED, "Warmup is turned off")
        return settings.state
    blocked = await blocked_reason(session, mailbox)
    if blocked is not None:
        state = WarmupState.ERROR if mailbox.status == MailboxStatus.ERROR else WarmupState.PAUSED
        await set_state(session, settings, mailbox, state, blocked)
        return settings.state
    if settings.state == WarmupState.ERROR:
        retested = mailbox.last_verified_at is not None and (
            mailbox.last_verified_at > settings.updated_at
        )
        if not retested:
            return settings.state
    if ramp_complete(settings, local_day(settings, now)):
        reason = "The ramp reached dailyTarget"
        await set_state(session, settings, mailbox, WarmupState.READY, reason)
    else:
        await set_state(session, settings, mailbox, WarmupState.WARMING, None)
    return settings.state


async def mark_error(session: AsyncSession, mailbox_id: str, reason: str) -> None:
    """A warmup login failed: the mailbox stops warming until fixed."""
    mailbox = await session.get(Mailbox, mailbox_id)
    settings = await session.get(WarmupSettings, mailbox_id)
    if mailbox is None or settings is None:
        return
    await set_state(session, settings, mailbox, WarmupState.ERROR, reason[:1000])


async def update_settings(
    session: AsyncSession, settings: WarmupSettings, mailbox: Mailbox, data: WarmupSettingsIn
) -> WarmupSettings:
    target = data.daily_target if data.daily_target is not None else settings.daily_target
    if target > mailbox.daily_send_limit:
        raise ValidationFailed.for_field(
            "dailyTarget",
            f"dailyTarget ({target}) may not exceed the mailbox's dailySendLimit "
            f"({mailbox.daily_send_limit})",
        )
    enabling = data.enabled is True
    if enabling:
        blocked = await blocked_reason(session, mailbox)
        if blocked is not None:
            raise Conflict(f"Warmup cannot be enabled: {blocked}", field="enabled")
    for field in ("start_per_day", "ramp_up_per_day", "daily_target", "reply_rate"):
        value = getattr(data, field)
        if value is not None:
            setattr(settings, field, value)
    if data.send_window is not None:
        settings.window_start = data.send_window.start
        settings.window_end = data.send_window.end
        settings.timezone = data.send_window.timezone
    now = utcnow()
    if data.enabled is not None:
        _switch(settings, mailbox, data.enabled, now)
    settings.updated_at = now
    await session.flush()
    await refresh_state(session, settings, mailbox, now)
    return settings


def _switch(settings: WarmupSettings, mailbox: Mailbox, enabled: bool, now: datetime) -> None:
    if enabled and not settings.enabled:
        # The ramp starts again from startPerDay; an error is cleared by re-enabling.
        settings.started_on = local_day(settings, now)
        if settings.state == WarmupState.ERROR:
            settings.state_reason = None
            settings.state = WarmupState.PAUSED
    if enabled and settings.state == WarmupState.ERROR:
        settings.state = WarmupState.PAUSED
        settings.state_reason = None
    settings.enabled = enabled


async def bulk_switch(
    session: AsyncSession, workspace_id: str, data: WarmupBulkIn, *, enabled: bool
) -> WarmupBulkOut:
    """Enable or disable many. Listed ids are all-or-nothing (409 naming those that
    cannot warm); a filter applies to the mailboxes it matches that can, and lists
    the others as skipped with their reason."""
    filters = {"tag": data.tag, "pool_id": data.pool_id, "domain": data.domain}
    has_filter = any(value is not None for value in filters.values())
    if data.mailbox_ids is None and not has_filter:
        raise ValidationFailed.for_field(
            "mailboxIds", "give mailboxIds or a filter (tag, poolId, domain)"
        )
    if data.mailbox_ids is not None and has_filter:
        raise ValidationFailed.for_field("mailboxIds", "give mailboxIds or a filter, not both")
    if data.mailbox_ids is not None:
        ids = list(dict.fromkeys(data.mailbox_ids))
        found = {
            m.id: m
            for m in await session.scalars(
                select(Mailbox).where(Mailbox.workspace_id == workspace_id, Mailbox.id.in_(ids))
            )
        }
        unknown = [mailbox_id for mailbox_id in ids if mailbox_id not in found]
        if unknown:
            raise NotFound(f"Mailboxes not found: {', '.join(unknown[:20])}", mailboxIds=unknown)
        targets = [found[mailbox_id] for mailbox_id in ids]
    else:
        query = MailboxRepository.filtered(workspace_id, MailboxFilters(**filters))
        targets = list(await session.scalars(query.order_by(Mailbox.created_at, Mailbox.id)))
    skipped: list[SkippedMailbox] = []
    if enabled:
        for mailbox in targets:
            reason = await blocked_reason(session, mailbox)
            if reason is not None:
                skipped.append(SkippedMailbox(mailbox_id=mailbox.id, reason=reason))
        if skipped and data.mailbox_ids is not None:
            raise Conflict(
                "Warmup cannot be enabled on every mailbox listed; nothing changed",
                skipped=[s.model_dump(by_alias=True) for s in skipped],
            )
    skipped_ids = {s.mailbox_id for s in skipped}
    updated: list[str] = []
    now = utcnow()
    for mailbox in targets:
        if mailbox.id in skipped_ids:
            continue
        settings = await settings_for(session, mailbox)
        _switch(settings, mailbox, enabled, now)
        settings.updated_at = now
        await session.flush()
        await refresh_state(session, settings, mailbox, now)
        updated.append(mailbox.id)
    return WarmupBulkOut(updated=updated, skipped=skipped)


# Analytics


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @classmethod
    def of(cls, start: date | None, end: date | None, today: date) -> Period:
        end = end or today
        start = start or end - timedelta(days=DEFAULT_ANALYTICS_DAYS - 1)
        if start > end:
            raise ValidationFailed.for_field("from", "from must not be after to")
        if (end - start).days > 366:
            raise ValidationFailed.for_field("from", "at most 366 days at once")
        return cls(start, end)


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def health_score(totals: WarmupTotals) -> float | None:
    """0.5 x inboxRate + 0.3 x (100 - spamRate) + 0.2 x arrivalRate, over the
    messages the mailbox sent: rates in percent of the messages found (inbox,
    spam) or due (arrival: found / (found + missing)). None before any was found."""
    found = totals.inbox + totals.spam + totals.promotions + totals.other
    if not found:
        return None
    inbox_rate = 100.0 * totals.inbox / found
    spam_rate = 100.0 * totals.spam / found
    arrival_rate = 100.0 * found / (found + totals.missing)
    return round(0.5 * inbox_rate + 0.3 * (100.0 - spam_rate) + 0.2 * arrival_rate, 1)


async def analytics(
    session: AsyncSession, mailbox_list: list[Mailbox], period: Period, now: datetime
) -> list[WarmupAnalyticsOut]:
    ids = [m.id for m in mailbox_list]
    if not ids:
        return []
    in_period = and_(WarmupMessage.day >= period.start, WarmupMessage.day <= period.end)
    was_sent = WarmupMessage.status == WarmupMessageStatus.SENT

    def placed(kind: str) -> Any:
        return func.sum(case((and_(was_sent, WarmupMessage.placement == kind), 1), else_=0))

    sent_rows = await session.execute(
        select(
            WarmupMessage.sender_id,
            WarmupMessage.day,
            func.sum(case((was_sent, 1), else_=0)),
            placed("inbox"),
            placed("spam"),
            placed("promotions"),
            placed("other"),
            func.sum(
                case(
                    (
                        and_(
                            was_sent,
                            WarmupMessage.placement.is_(None),
                            WarmupMessage.sent_at < now - MISSING_AFTER,
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
            func.sum(case((WarmupMessage.saved_from_spam, 1), else_=0)),
            func.sum(case((WarmupMessage.replied, 1), else_=0)),
        )
        .where(WarmupMessage.sender_id.in_(ids), in_period)
        .group_by(WarmupMessage.sender_id, WarmupMessage.day)
    )
    received_rows = await session.execute(
        select(WarmupMessage.receiver_id, WarmupMessage.day, func.count())
        .where(
            WarmupMessage.receiver_id.in_(ids),
            in_period,
            WarmupMessage.seen_at.is_not(None),
        )
        .group_by(WarmupMessage.receiver_id, WarmupMessage.day)
    )
    totals = {mailbox_id: WarmupTotals() for mailbox_id in ids}
    days: dict[str, dict[date, WarmupDay]] = {mailbox_id: {} for mailbox_id in ids}
    for row in sent_rows:
        mailbox_id, day, sent, inbox, spam, promotions, other, missing, saved, replied = row
        total = totals[mailbox_id]
        total.sent += int(sent or 0)
        total.inbox += int(inbox or 0)
        total.spam += int(spam or 0)
        total.promotions += int(promotions or 0)
        total.other += int(other or 0)
        total.missing += int(missing or 0)
        total.saved_from_spam += int(saved or 0)
        total.replied += int(replied or 0)
        entry = days[mailbox_id].setdefault(day, WarmupDay(date=day))
        entry.sent += int(sent or 0)
        entry.inbox += int(inbox or 0)
        entry.spam += int(spam or 0)
        entry.replied += int(replied or 0)
    for mailbox_id, day, count in received_rows:
        totals[mailbox_id].received += int(count)
        days[mailbox_id].setdefault(day, WarmupDay(date=day)).received += int(count)
    settings_by_id = {
        s.mailbox_id: s
        for s in await session.scalars(
            select(WarmupSettings).where(WarmupSettings.mailbox_id.in_(ids))
        )
    }
    results = []
    for mailbox in mailbox_list:
        total = totals[mailbox.id]
        found = total.inbox + total.spam + total.promotions + total.other
        settings = settings_by_id.get(mailbox.id)
        results.append(
            WarmupAnalyticsOut(
                mailbox_id=mailbox.id,
                email=mailbox.email,
                enabled=settings.enabled if settings else False,
                state=settings.state if settings else WarmupState.PAUSED,
                reason=settings.state_reason if settings else "Warmup is turned off",
                from_=period.start,
                to=period.end,
                totals=total,
                inbox_rate=_rate(total.inbox, found),
                spam_rate=_rate(total.spam, found),
                health_score=health_score(total),
                daily=[days[mailbox.id][day] for day in sorted(days[mailbox.id])],
            )
        )
    return results


def analytics_mailboxes_query(workspace_id: str, mailbox_ids: list[str] | None) -> Select[Any]:
    """The mailboxes a report covers: those listed, or every mailbox with warmup on.

    Either way the mailboxes are found by id, from the list or from the workspace's
    warmup settings: their workspace is only checked on each (`unindexed`), or SQLite
    walked the workspace's every mailbox to probe the list, 160 ms for a page and
    as much for its count in a workspace of 100,000 with none warming up."""
    if mailbox_ids:
        chosen: Any = mailbox_ids
    else:
        chosen = select(WarmupSettings.mailbox_id).where(
            WarmupSettings.workspace_id == workspace_id,
            or_(WarmupSettings.enabled.is_(True), WarmupSettings.state == WarmupState.ERROR),
        )
    return select(Mailbox).where(
        unindexed(Mailbox.workspace_id, type_=Mailbox.workspace_id.type) == workspace_id,
        Mailbox.id.in_(chosen),
    )


async def analytics_mailboxes(
    session: AsyncSession, workspace_id: str, mailbox_ids: list[str] | None, page: Page
) -> tuple[list[Mailbox], int]:
    """One page of `analytics_mailboxes_query`'s mailboxes by email, and their total."""
    query = analytics_mailboxes_query(workspace_id, mailbox_ids)
    return await MailboxRepository(session).paginate(query, page, Mailbox.email, Mailbox.id)
