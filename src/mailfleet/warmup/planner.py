"""The warmup planner: who sends how many messages to whom, and when.

Each round, every warming mailbox of a workspace gets the rest of its day's
quota (along its ramp) as planned message rows, spread over what is left of its
send window with jitter, each addressed to another warming mailbox of the same
workspace: never the sender itself, preferably on another domain, and
preferably at another provider, balanced so each receiver gets a fair share.
Nothing outside the workspace's warming mailboxes is ever a receiver.

Planning is idempotent: a sender's n-th message of a day is one row under a
unique key (sender, day, kind, seq), so a replayed or concurrent round plans
nothing twice. Flushes, never commits.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.models import Mailbox, WarmupMessage, WarmupMessageStatus, WarmupSettings
from mailfleet.models.warmup import ACTIVE_WARMUP_STATES
from mailfleet.warmup import service
from mailfleet.warmup.templates import pick_subject


@dataclass(frozen=True)
class Member:
    settings: WarmupSettings
    mailbox: Mailbox


def new_tracking_code() -> str:
    return "mfw" + secrets.token_hex(10)


def message_id_for(code: str, mailbox: Mailbox) -> str:
    return f"<{code}@{mailbox.domain}>"


def window_bounds(settings: WarmupSettings, day: date) -> tuple[datetime, datetime]:
    zone = ZoneInfo(settings.timezone)
    start = datetime.combine(day, time.fromisoformat(settings.window_start), zone)
    end = datetime.combine(day, time.fromisoformat(settings.window_end), zone)
    return start, end


def spread(start: datetime, end: datetime, count: int, rng: random.Random) -> list[datetime]:
    """`count` moments between start and end: one per equal slot, jittered inside it."""
    if count <= 0:
        return []
    slot = (end - start) / count
    return [start + slot * (index + rng.uniform(0.1, 0.9)) for index in range(count)]


def choose_receivers(
    sender: Mailbox,
    candidates: Sequence[Mailbox],
    count: int,
    already: Counter[str],
    rng: random.Random,
) -> list[Mailbox]:
    """`count` receivers for `sender`: another domain when the network has one,
    another provider among those when possible, the least used first."""
    others = [m for m in candidates if m.id != sender.id]
    if not others or count <= 0:
        return []
    pool = [m for m in others if m.domain != sender.domain] or others
    pool = [m for m in pool if m.provider != sender.provider] or pool
    used = Counter(already)
    chosen: list[Mailbox] = []
    for _ in range(count):
        fewest = min(used[m.id] for m in pool)
        least_used = [m for m in pool if used[m.id] == fewest]
        receiver = rng.choice(least_used)
        used[receiver.id] += 1
        chosen.append(receiver)
    return chosen


async def workspace_members(
    session: AsyncSession, workspace_id: str, now: datetime
) -> list[Member]:
    """The workspace's mailboxes with warmup on, states refreshed; warming ones first."""
    rows = await session.execute(
        select(WarmupSettings, Mailbox)
        .join(Mailbox, Mailbox.id == WarmupSettings.mailbox_id)
        .where(WarmupSettings.workspace_id == workspace_id, WarmupSettings.enabled.is_(True))
        .order_by(Mailbox.email)
    )
    members = []
    for settings, mailbox in rows:
        await service.refresh_state(session, settings, mailbox, now)
        members.append(Member(settings, mailbox))
    return members


async def workspaces_warming(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(WarmupSettings.workspace_id)
        .where(WarmupSettings.enabled.is_(True))
        .distinct()
        .order_by(WarmupSettings.workspace_id)
    )
    return list(rows)


async def plan_workspace(session: AsyncSession, workspace_id: str, at: datetime) -> int:
    """Plan the rest of today's sends of every warming mailbox; returns how many."""
    members = await workspace_members(session, workspace_id, at)
    network = [m for m in members if m.settings.state in ACTIVE_WARMUP_STATES]
    if len(network) < 2:
        return 0
    receivers = [m.mailbox for m in network]
    planned = 0
    for member in network:
        planned += await _plan_sender(session, member, receivers, at)
    return planned


async def _plan_sender(
    session: AsyncSession, member: Member, network: Sequence[Mailbox], at: datetime
) -> int:
    settings, mailbox = member.settings, member.mailbox
    day = service.local_day(settings, at)
    if settings.started_on is None:
        settings.started_on = day
    quota = service.ramp_quota(settings, mailbox, day)
    existing = list(
        await session.execute(
            select(WarmupMessage.seq, WarmupMessage.receiver_id).where(
                WarmupMessage.sender_id == mailbox.id,
                WarmupMessage.day == day,
                WarmupMessage.kind == "warmup",
            )
        )
    )
    remaining = quota - len(existing)
    if remaining <= 0:
        return 0
    window_start, window_end = window_bounds(settings, day)
    if at > window_end:
        return 0
    rng = random.Random()  # noqa: S311 - jitter, not a secret
    moments = spread(max(at, window_start), window_end, remaining, rng)
    already: Counter[str] = Counter(receiver_id for _, receiver_id in existing)
    chosen = choose_receivers(mailbox, network, remaining, already, rng)
    next_seq = max((seq for seq, _ in existing), default=-1) + 1
    for offset, (receiver, moment) in enumerate(zip(chosen, moments, strict=False)):
        code = new_tracking_code()
        session.add(
            WarmupMessage(
                workspace_id=mailbox.workspace_id,
                sender_id=mailbox.id,
                receiver_id=receiver.id,
                kind="warmup",
                day=day,
                seq=next_seq + offset,
                tracking_code=code,
                message_id=message_id_for(code, mailbox),
                subject=pick_subject(code),
                planned_at=moment,
                status=WarmupMessageStatus.PLANNED,
            )
        )
    await session.flush()
    return len(chosen)


async def plan_reply(
    session: AsyncSession, parent: WarmupMessage, replier: Mailbox, at: datetime
) -> WarmupMessage | None:
    """A reply from the receiver of `parent` back to its sender, due at `at`."""
    if parent.kind != "warmup" or parent.replied:
        return None
    exists = await session.scalar(
        select(WarmupMessage.id).where(WarmupMessage.parent_id == parent.id)
    )
    if exists is not None:
        return None
    seq = (
        await session.scalar(
            select(func.coalesce(func.max(WarmupMessage.seq), -1)).where(
                WarmupMessage.sender_id == replier.id,
                WarmupMessage.day == parent.day,
                WarmupMessage.kind == "reply",
            )
        )
        or 0
    )
    code = new_tracking_code()
    subject = (
        parent.subject if parent.subject.lower().startswith("re:") else f"Re: {parent.subject}"
    )
    reply = WarmupMessage(
        workspace_id=parent.workspace_id,
        sender_id=replier.id,
        receiver_id=parent.sender_id,
        kind="reply",
        day=parent.day,
        seq=int(seq) + 1,
        parent_id=parent.id,
        tracking_code=code,
        message_id=message_id_for(code, replier),
        subject=subject[:300],
        planned_at=at,
        status=WarmupMessageStatus.PLANNED,
    )
    session.add(reply)
    await session.flush()
    return reply


def wants_reply(code: str, reply_rate: int) -> bool:
    """Deterministic per message: a replayed scan decides the same way."""
    rng = random.Random(f"reply-decision:{code}")  # noqa: S311 - a draw, not a secret
    return rng.randrange(100) < reply_rate


def due_cutoff(at: datetime) -> datetime:
    # Rounding slack: a message planned for the round's own instant is due in it.
    return at + timedelta(seconds=1)
