"""Request and response shapes of placement tests."""

from __future__ import annotations

from pydantic import Field, field_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.models import DeliveryMode, PlacementTestStatus

MAX_SENDERS = 50
MAX_PAIRS = 2500
MIN_TIMEOUT_MINUTES = 5
MAX_TIMEOUT_MINUTES = 240


def _unique(ids: list[str]) -> list[str]:
    cleaned = [item.strip() for item in ids]
    if any(not item for item in cleaned):
        raise ValueError("mailbox ids must not be empty")
    return list(dict.fromkeys(cleaned))


class PlacementTestIn(ApiModel):
    model_config = example(
        {
            "name": "Before the March campaign",
            "fromMailboxIds": ["mbx_1", "mbx_2"],
            "subject": "Quick question about your hiring plans",
            "text": "Hi,\n\nAre you the right person to talk to about hiring?\n",
            "deliveryMode": "together",
            "timeoutMinutes": 60,
        }
    )

    name: str = Field(min_length=1, max_length=200)
    from_mailbox_ids: list[str] = Field(min_length=1, max_length=MAX_SENDERS)
    seed_mailbox_ids: list[str] | None = Field(
        default=None,
        max_length=MAX_PAIRS,
        description="Default: every seed of the workspace (placementSeed), senders left out",
    )
    subject: str = Field(min_length=1, max_length=300)
    text: str | None = Field(default=None, max_length=100_000)
    html: str | None = Field(default=None, max_length=200_000)
    delivery_mode: DeliveryMode = DeliveryMode.TOGETHER
    timeout_minutes: int = Field(
        default=60, ge=MIN_TIMEOUT_MINUTES, le=MAX_TIMEOUT_MINUTES, description="Minutes"
    )

    @field_validator("from_mailbox_ids", "seed_mailbox_ids")
    @classmethod
    def _unique_ids(cls, ids: list[str] | None) -> list[str] | None:
        return None if ids is None else _unique(ids)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("the subject is one line")
        return value


class AuthOut(ApiOut):
    """What the seed's server recorded (Authentication-Results); null: no header said."""

    spf: str | None
    dkim: str | None
    dmarc: str | None


class DomainAuthOut(ApiOut):
    """The sender domain's records as its latest DNS check found them."""

    domain: str
    spf: str | None
    dkim: str | None
    dmarc: str | None
    checked_at: str | None


class PlacementSummary(ApiOut):
    """Counts of messages, and rates in percent of `messages`."""

    messages: int
    inbox: int
    spam: int
    promotions: int
    other: int
    missing: int
    waiting: int
    failed: int
    inbox_rate: float
    spam_rate: float
    promotions_rate: float
    other_rate: float
    missing_rate: float


class ProviderSummary(PlacementSummary):
    provider: str


class SenderSummary(PlacementSummary):
    mailbox_id: str
    email: str
    domain_auth: DomainAuthOut


class SummaryOut(ApiOut):
    overall: PlacementSummary
    providers: list[ProviderSummary]
    senders: list[SenderSummary]


class PlacementResultOut(ApiOut):
    sender_id: str
    sender_email: str
    seed_id: str
    seed_email: str
    provider: str
    status: str = Field(description="planned, sending, sent or failed: the send")
    folder: str | None = Field(
        description="inbox, spam, promotions, other or missing; null while awaited"
    )
    folder_name: str | None
    arrived_after_seconds: float | None
    auth: AuthOut
    sent_at: Timestamp | None
    found_at: Timestamp | None
    error: str | None


class PlacementTestBrief(ApiOut):
    id: str
    name: str
    status: PlacementTestStatus
    test_code: str
    subject: str
    delivery_mode: str
    timeout_minutes: int
    senders: int
    seeds: int
    overall: PlacementSummary
    created_at: Timestamp
    sent_at: Timestamp | None
    completed_at: Timestamp | None
    canceled_at: Timestamp | None


class PlacementTestOut(PlacementTestBrief):
    summary: SummaryOut
    results: list[PlacementResultOut]


class SeedOut(ApiOut):
    mailbox_id: str
    email: str
    provider: str
    status: str
