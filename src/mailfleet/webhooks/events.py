"""The webhook event catalogue: every event type Mailfleet sends, in one place.

Subscriptions are checked against it, `emit` refuses a type missing from it,
and README.md's "Webhooks" section documents it. Every event reaches a
receiver as

    {"id": ..., "type": ..., "createdAt": ..., "workspaceId": ..., "data": {...}}

`data` is camelCase JSON and never holds a secret (no passwords, tokens or keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from mailfleet.kit.clock import isoformat

ALL_EVENTS: Final = "*"


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    # The keys `data` carries, for the documentation; emitters may add more.
    data_fields: tuple[str, ...]


MAILBOX_CREATED: Final = "mailbox.created"
MAILBOX_VERIFIED: Final = "mailbox.verified"
MAILBOX_VERIFICATION_FAILED: Final = "mailbox.verification_failed"
MAILBOX_UPDATED: Final = "mailbox.updated"
MAILBOX_DELETED: Final = "mailbox.deleted"
BULK_JOB_COMPLETED: Final = "bulk_job.completed"
EXPORT_COMPLETED: Final = "export.completed"
DOMAIN_CONNECTED: Final = "domain.connected"
DOMAIN_DNS_STATUS_CHANGED: Final = "domain.dns_status_changed"
DOMAIN_NAMESERVERS_PROPAGATED: Final = "domain.nameservers_propagated"
DOMAIN_PURCHASED: Final = "domain.purchased"
DOMAIN_PURCHASE_FAILED: Final = "domain.purchase_failed"
SUBSCRIPTION_CREATED: Final = "subscription.created"
SUBSCRIPTION_RENEWED: Final = "subscription.renewed"
SUBSCRIPTION_PAST_DUE: Final = "subscription.past_due"
SUBSCRIPTION_CANCELED: Final = "subscription.canceled"
WALLET_CREDITED: Final = "wallet.credited"
WALLET_LOW_BALANCE: Final = "wallet.low_balance"
INVOICE_CREATED: Final = "invoice.created"
WARMUP_STATE_CHANGED: Final = "warmup.state_changed"
PLACEMENT_TEST_COMPLETED: Final = "placement_test.completed"
WEBHOOK_DISABLED: Final = "webhook.disabled"
WEBHOOK_TEST: Final = "webhook.test"

# Amounts are integers in the currency's minor unit (cents).
_SUBSCRIPTION_FIELDS = (
    "subscriptionId",
    "planId",
    "planName",
    "status",
    "quantity",
    "amount",
    "currency",
    "currentPeriodStart",
    "currentPeriodEnd",
)

CATALOGUE: Final[tuple[EventType, ...]] = (
    EventType(
        MAILBOX_CREATED,
        "A mailbox was added; its connection test is queued.",
        ("mailboxId", "email", "status"),
    ),
    EventType(
        MAILBOX_VERIFIED,
        "A mailbox's SMTP and IMAP logins succeeded; it is active.",
        ("mailboxId", "email", "status"),
    ),
    EventType(
        MAILBOX_VERIFICATION_FAILED,
        "A connection test failed (a failed first test deletes the mailbox).",
        ("mailboxId", "email", "errorCode", "errorMessage", "mailboxDeleted"),
    ),
    EventType(
        MAILBOX_UPDATED,
        "A mailbox's settings or status changed.",
        ("mailboxId", "email", "status", "changes"),
    ),
    EventType(MAILBOX_DELETED, "A mailbox was removed.", ("mailboxId", "email")),
    EventType(
        BULK_JOB_COMPLETED,
        "A bulk connect job finished (`failed` counts invalid rows too; `error` when the "
        "job itself failed).",
        ("jobId", "status", "total", "succeeded", "failed", "duplicates"),
    ),
    EventType(
        EXPORT_COMPLETED,
        "An export to a sending platform finished.",
        ("exportId", "platform", "status", "total", "succeeded", "failed"),
    ),
    EventType(
        WARMUP_STATE_CHANGED,
        "A mailbox's warmup changed state (warming, ready, paused, error), with the reason.",
        ("mailboxId", "email", "state", "previousState", "reason"),
    ),
    EventType(
        PLACEMENT_TEST_COMPLETED,
        "A placement test finished: every message found, or its timeout passed (the rest "
        "are missing). Counts per folder and rates in percent.",
        (
            "testId",
            "name",
            "status",
            "completedAt",
            "messages",
            "inbox",
            "spam",
            "promotions",
            "other",
            "missing",
            "failed",
            "inboxRate",
            "spamRate",
            "missingRate",
        ),
    ),
    EventType(DOMAIN_CONNECTED, "A domain was connected.", ("domainId", "domain")),
    EventType(
        DOMAIN_DNS_STATUS_CHANGED,
        "A DNS check (MX, SPF, DKIM, DMARC) moved the domain's status: pending, active "
        "or misconfigured.",
        ("domainId", "domain", "previousStatus", "status"),
    ),
    EventType(
        DOMAIN_NAMESERVERS_PROPAGATED,
        "A domain's nameservers now answer as configured.",
        ("domainId", "domain", "nameservers"),
    ),
    EventType(
        DOMAIN_PURCHASED,
        "A bought domain was registered (paid); it is then connected and checked.",
        ("orderId", "domain", "registrar", "years", "amount", "currency"),
    ),
    EventType(
        DOMAIN_PURCHASE_FAILED,
        "A name of a purchase order could not be registered; its price went back to the wallet.",
        ("orderId", "domain", "reason", "newPrice", "refunded", "amount", "currency"),
    ),
    EventType(
        SUBSCRIPTION_CREATED,
        "A subscription started; its first period was paid from the wallet.",
        _SUBSCRIPTION_FIELDS,
    ),
    EventType(
        SUBSCRIPTION_RENEWED,
        "A subscription's new period was paid (paused mailboxes resume).",
        (*_SUBSCRIPTION_FIELDS, "invoiceId", "resumedMailboxes"),
    ),
    EventType(
        SUBSCRIPTION_PAST_DUE,
        "A renewal could not be paid; mailboxes are paused when the grace period ends.",
        (*_SUBSCRIPTION_FIELDS, "amountDue", "graceEndsAt", "message"),
    ),
    EventType(
        SUBSCRIPTION_CANCELED,
        "A subscription was canceled; it stays active until endsAt.",
        (*_SUBSCRIPTION_FIELDS, "cancelAtPeriodEnd", "endsAt"),
    ),
    EventType(
        WALLET_CREDITED,
        "Money reached the wallet: a top-up, a credit grant or a refund of unused time.",
        ("entryId", "kind", "amount", "currency", "balance", "description"),
    ),
    EventType(
        WALLET_LOW_BALANCE,
        "A charge left the wallet under the auto-recharge threshold.",
        ("balance", "threshold", "currency", "autoRecharge"),
    ),
    EventType(
        INVOICE_CREATED,
        "An invoice was issued (every charge and every top-up has one).",
        ("invoiceId", "number", "kind", "status", "total", "currency"),
    ),
    EventType(
        WEBHOOK_DISABLED,
        "An endpoint was disabled after sustained delivery failures; sent to the "
        "workspace's other endpoints.",
        ("webhookId", "host", "reason", "disabledAt"),
    ),
    EventType(
        WEBHOOK_TEST,
        "Sent to one endpoint by POST /v1/webhooks/{id}/test.",
        ("webhookId", "message"),
    ),
)

EVENT_TYPES: Final[Mapping[str, EventType]] = {event.name: event for event in CATALOGUE}


def is_known(event_type: str) -> bool:
    return event_type in EVENT_TYPES


def normalize_subscription(event_types: Iterable[str] | None) -> list[str]:
    """Known types without duplicates, in the given order; None or "*" means all.

    Raises ValueError naming the first unknown type.
    """
    if event_types is None:
        return [ALL_EVENTS]
    chosen: list[str] = []
    for name in event_types:
        if name == ALL_EVENTS:
            return [ALL_EVENTS]
        if name not in EVENT_TYPES:
            raise ValueError(f"unknown event type {name!r}; see GET /v1/webhooks/event-types")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError('give at least one event type, or ["*"] (or omit it) for all')
    return chosen


def subscribes_to(event_types: Iterable[str], event_type: str) -> bool:
    return any(name in (ALL_EVENTS, event_type) for name in event_types)


def build_payload(
    *,
    event_id: str,
    event_type: str,
    created_at: datetime,
    workspace_id: str,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON object a receiver gets, signed as sent."""
    return {
        "id": event_id,
        "type": event_type,
        "createdAt": isoformat(created_at),
        "workspaceId": workspace_id,
        "data": dict(data),
    }
