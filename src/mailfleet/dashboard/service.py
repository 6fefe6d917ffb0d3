"""The dashboard overview: counts read straight from each area's tables.

Read-only and per workspace; every number is a COUNT or SUM over rows the API
lists elsewhere, so the overview and the lists never disagree.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import ledger
from mailfleet.billing.plans import billing_enabled
from mailfleet.config import Settings
from mailfleet.dashboard.schemas import (
    CountBy,
    DomainsOverview,
    FailingWebhook,
    MailboxesOverview,
    Overview,
    PlacementOverview,
    RunningJob,
    WalletOverview,
    WarmupDayTotals,
    WarmupMailbox,
    WarmupOverview,
)
from mailfleet.kit.clock import utcnow
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes import service as mailboxes
from mailfleet.models import (
    DOMAIN_STATUSES,
    BulkJob,
    Domain,
    ExportHistory,
    ExportStatus,
    Mailbox,
    PlacementResult,
    PlacementTest,
    PlacementTestStatus,
    WarmupSettings,
    WebhookEndpoint,
)
from mailfleet.models.warmup import WarmupState
from mailfleet.placement import service as placement
from mailfleet.placement.repository import PlacementResultRepository
from mailfleet.placement.schemas import ProviderSummary
from mailfleet.warmup import service as warmup

# Health scores are computed over this many warmup mailboxes at most (by email):
# the overview stays one bounded read however large the workspace.
WARMUP_SCORED_LIMIT = 1000
WEAKEST_SHOWN = 5
LISTED_LIMIT = 20
PLACEMENT_TESTS_SHOWN = 5


def provider_counts_query(workspace_id: str) -> Select[str, int]:
    """The workspace's mailboxes per provider, most first: read from
    ix_mailboxes_workspace_provider alone."""
    return (
        select(Mailbox.provider, func.count())
        .where(Mailbox.workspace_id == workspace_id)
        .group_by(Mailbox.provider)
        .order_by(func.count().desc(), Mailbox.provider)
    )


async def mailboxes_overview(session: AsyncSession, workspace_id: str) -> MailboxesOverview:
    counts = await mailboxes.status_counts(session, workspace_id)
    rows = await session.execute(provider_counts_query(workspace_id))
    return MailboxesOverview(
        total=counts.pop("total"),
        pending_tests=counts.pop("pending_tests"),
        by_status=counts,
        by_provider=[CountBy(key=provider, count=count) for provider, count in rows],
    )


async def domains_overview(session: AsyncSession, workspace_id: str) -> DomainsOverview:
    by_health: dict[str, int] = {str(status): 0 for status in DOMAIN_STATUSES}
    rows = await session.execute(
        select(Domain.status, func.count())
        .where(Domain.workspace_id == workspace_id)
        .group_by(Domain.status)
    )
    for status, count in rows:
        by_health[str(status)] = count
    return DomainsOverview(total=sum(by_health.values()), by_health=by_health)


async def warmup_overview(session: AsyncSession, workspace_id: str) -> WarmupOverview:
    by_state: dict[str, int] = {str(state): 0 for state in WarmupState}
    enabled = 0
    rows = await session.execute(
        select(WarmupSettings.state, WarmupSettings.enabled, func.count())
        .where(WarmupSettings.workspace_id == workspace_id)
        .group_by(WarmupSettings.state, WarmupSettings.enabled)
    )
    for state, is_enabled, count in rows:
        if is_enabled or state == WarmupState.ERROR:
            by_state[state] = by_state.get(state, 0) + count
        if is_enabled:
            enabled += count
    now = utcnow()
    period = warmup.Period.of(None, None, now.date())
    found, _ = await warmup.analytics_mailboxes(
        session, workspace_id, None, Page(limit=WARMUP_SCORED_LIMIT, skip=0)
    )
    reports = await warmup.analytics(session, found, period, now)
    scored = [r for r in reports if r.health_score is not None]
    average = round(sum(r.health_score or 0.0 for r in scored) / len(scored), 1) if scored else None
    weakest = sorted(scored, key=lambda r: (r.health_score, r.email))[:WEAKEST_SHOWN]
    days = {
        period.start + timedelta(days=offset): WarmupDayTotals(
            date=period.start + timedelta(days=offset), sent=0, inbox=0, spam=0
        )
        for offset in range((period.end - period.start).days + 1)
    }
    for report in reports:
        for day in report.daily:
            if day.date in days:
                totals = days[day.date]
                totals.sent += day.sent
                totals.inbox += day.inbox
                totals.spam += day.spam
    return WarmupOverview(
        enabled=enabled,
        by_state=by_state,
        average_health_score=average,
        weakest=[
            WarmupMailbox(
                mailbox_id=r.mailbox_id, email=r.email, state=r.state, health_score=r.health_score
            )
            for r in weakest
        ],
        period_days=(period.end - period.start).days + 1,
        daily=[days[day] for day in sorted(days)],
    )


async def running_jobs(session: AsyncSession, workspace_id: str) -> list[RunningJob]:
    """Bulk connect jobs and exports not finished yet, newest first."""
    bulk = await session.scalars(
        select(BulkJob)
        .where(BulkJob.workspace_id == workspace_id, BulkJob.status.in_(("queued", "running")))
        .order_by(BulkJob.created_at.desc(), BulkJob.id)
        .limit(LISTED_LIMIT)
    )
    exports = await session.scalars(
        select(ExportHistory)
        .where(
            ExportHistory.workspace_id == workspace_id,
            ExportHistory.status == ExportStatus.IN_PROGRESS,
        )
        .order_by(ExportHistory.created_at.desc(), ExportHistory.id)
        .limit(LISTED_LIMIT)
    )
    jobs = [
        RunningJob(
            id=job.id,
            kind="bulk_connect",
            status=job.status,
            total=job.total,
            done=job.connected_count + job.failed_count,
            created_at=job.created_at,
        )
        for job in bulk
    ] + [
        RunningJob(
            id=history.id,
            kind=f"export:{history.platform}",
            status=history.status,
            total=history.total,
            done=history.connected_count + history.failed_count,
            created_at=history.created_at,
        )
        for history in exports
    ]
    return sorted(jobs, key=lambda job: job.created_at, reverse=True)[:LISTED_LIMIT]


async def failing_webhooks(session: AsyncSession, workspace_id: str) -> list[FailingWebhook]:
    """Endpoints whose latest deliveries failed, or that were disabled for failing."""
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.workspace_id == workspace_id,
            or_(
                WebhookEndpoint.failed_deliveries_in_row > 0,
                WebhookEndpoint.disabled_at.is_not(None),
            ),
        )
        .order_by(WebhookEndpoint.failed_deliveries_in_row.desc(), WebhookEndpoint.id)
        .limit(LISTED_LIMIT)
    )
    return [
        FailingWebhook(
            id=endpoint.id,
            url=endpoint.url,
            enabled=endpoint.enabled,
            failed_deliveries_in_row=endpoint.failed_deliveries_in_row,
            failing_since=endpoint.failing_since,
            disabled_reason=endpoint.disabled_reason,
        )
        for endpoint in rows
    ]


async def placement_overview(session: AsyncSession, workspace_id: str) -> PlacementOverview:
    latest, _ = await placement.list_tests(
        session, workspace_id, Page(limit=PLACEMENT_TESTS_SHOWN, skip=0)
    )
    completed = await session.scalar(
        select(PlacementTest)
        .where(
            PlacementTest.workspace_id == workspace_id,
            PlacementTest.status == PlacementTestStatus.COMPLETED,
        )
        .order_by(PlacementTest.completed_at.desc(), PlacementTest.id)
        .limit(1)
    )
    providers: list[ProviderSummary] = []
    if completed is not None:
        by_provider: dict[str, list[PlacementResult]] = {}
        for result in await PlacementResultRepository(session).of_tests([completed.id]):
            by_provider.setdefault(result.provider, []).append(result)
        providers = [
            ProviderSummary(provider=provider, **placement.summarize(rows))
            for provider, rows in sorted(by_provider.items())
        ]
    return PlacementOverview(
        latest=latest,
        latest_completed_id=completed.id if completed is not None else None,
        providers=providers,
    )


async def overview(session: AsyncSession, settings: Settings, workspace_id: str) -> Overview:
    wallet = None
    if billing_enabled(settings):
        wallet = WalletOverview(
            balance=await ledger.balance(session, workspace_id),
            currency=settings.billing_currency,
        )
    return Overview(
        mailboxes=await mailboxes_overview(session, workspace_id),
        domains=await domains_overview(session, workspace_id),
        warmup=await warmup_overview(session, workspace_id),
        running_jobs=await running_jobs(session, workspace_id),
        failing_webhooks=await failing_webhooks(session, workspace_id),
        placement=await placement_overview(session, workspace_id),
        wallet=wallet,
    )
