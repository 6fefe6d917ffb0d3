"""The overview's response model."""

from __future__ import annotations

from datetime import date

from mailfleet.kit.envelope import ApiOut, Timestamp
from mailfleet.placement.schemas import PlacementTestBrief, ProviderSummary


class CountBy(ApiOut):
    """How many items share one value (a status, a provider)."""

    key: str
    count: int


class MailboxesOverview(ApiOut):
    total: int
    by_status: dict[str, int]
    by_provider: list[CountBy]
    pending_tests: int


class DomainsOverview(ApiOut):
    total: int
    # pending (records not yet seen), active (checks pass), misconfigured.
    by_health: dict[str, int]


class WarmupMailbox(ApiOut):
    mailbox_id: str
    email: str
    state: str
    health_score: float | None


class WarmupDayTotals(ApiOut):
    """One day of warmup across the workspace: messages sent, and where the ones
    found landed (inbox, spam)."""

    date: date
    sent: int
    inbox: int
    spam: int


class WarmupOverview(ApiOut):
    enabled: int
    by_state: dict[str, int]
    average_health_score: float | None
    # The lowest health scores among mailboxes with one, lowest first.
    weakest: list[WarmupMailbox]
    period_days: int
    # Every day of the period, oldest first (days without messages are zeros).
    daily: list[WarmupDayTotals]


class RunningJob(ApiOut):
    id: str
    kind: str
    status: str
    total: int
    done: int
    created_at: Timestamp


class FailingWebhook(ApiOut):
    id: str
    url: str
    enabled: bool
    failed_deliveries_in_row: int
    failing_since: Timestamp | None
    disabled_reason: str | None


class WalletOverview(ApiOut):
    balance: int
    currency: str


class PlacementOverview(ApiOut):
    # The newest placement tests, newest first, each with its overall summary.
    latest: list[PlacementTestBrief]
    # The newest completed test, and where its messages landed per provider.
    latest_completed_id: str | None
    providers: list[ProviderSummary]


class Overview(ApiOut):
    mailboxes: MailboxesOverview
    domains: DomainsOverview
    warmup: WarmupOverview
    running_jobs: list[RunningJob]
    failing_webhooks: list[FailingWebhook]
    placement: PlacementOverview
    # Present only when billing is on (MAILFLEET_BILLING=on).
    wallet: WalletOverview | None
