"""All tables, imported here so Alembic and `Base.metadata` see every one."""

from mailfleet.models.accounts import ApiKey, User
from mailfleet.models.billing import (
    BillingAccount,
    BillingCounter,
    BillingDetails,
    IdempotentRequest,
    Invoice,
    MailboxRemoval,
    Payment,
    Plan,
    ProviderEvent,
    Subscription,
    SuspendedMailbox,
    WalletEntry,
)
from mailfleet.models.bulk import (
    BULK_ITEM_OUTCOMES,
    BULK_JOB_SOURCES,
    BULK_JOB_STATUSES,
    BulkJob,
    BulkJobItem,
)
from mailfleet.models.domains import (
    DNS_PROVIDERS,
    DOMAIN_STATUSES,
    MAIL_PROVIDERS,
    CloudflareCredential,
    DkimKey,
    DnsRecord,
    Domain,
    DomainDnsCheck,
)
from mailfleet.models.exports import (
    EXPORT_SOURCES,
    EXPORT_STATUSES,
    ConnectInboxRecord,
    ExportHistory,
    ExportItem,
    PlatformAccount,
)
from mailfleet.models.mailboxes import (
    MAILBOX_STATUSES,
    ConnectionTest,
    Mailbox,
    Pool,
    Tag,
    mailbox_tags,
)
from mailfleet.models.mailserver import MailPurge
from mailfleet.models.warmup import (
    WARMUP_MESSAGE_STATUSES,
    WARMUP_PLACEMENTS,
    WARMUP_STATES,
    WarmupMessage,
    WarmupSettings,
)
from mailfleet.models.webhooks import (
    DELIVERY_STATUSES,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
    WebhookEvent,
)
from mailfleet.models.workspaces import ROLES, Membership, Workspace

# Every column that holds keyring ciphertext, as (model, attribute): what
# `mailfleet keys rotate` re-encrypts. A model with a secret adds its column here.
ENCRYPTED_COLUMNS: list[tuple[type, str]] = [
    (Mailbox, "smtp_password_enc"),
    (Mailbox, "imap_password_enc"),
    (WebhookEndpoint, "secret_enc"),
    (DkimKey, "private_key_enc"),
    (CloudflareCredential, "api_token_enc"),
    (PlatformAccount, "api_key_enc"),
    (PlatformAccount, "login_password_enc"),
    (ExportItem, "connection_enc"),
]

__all__ = [
    "BULK_ITEM_OUTCOMES",
    "BULK_JOB_SOURCES",
    "BULK_JOB_STATUSES",
    "DELIVERY_STATUSES",
    "DNS_PROVIDERS",
    "DOMAIN_STATUSES",
    "ENCRYPTED_COLUMNS",
    "EXPORT_SOURCES",
    "EXPORT_STATUSES",
    "MAILBOX_STATUSES",
    "MAIL_PROVIDERS",
    "ROLES",
    "WARMUP_MESSAGE_STATUSES",
    "WARMUP_PLACEMENTS",
    "WARMUP_STATES",
    "ApiKey",
    "BillingAccount",
    "BillingCounter",
    "BillingDetails",
    "BulkJob",
    "BulkJobItem",
    "CloudflareCredential",
    "ConnectInboxRecord",
    "ConnectionTest",
    "DkimKey",
    "DnsRecord",
    "Domain",
    "DomainDnsCheck",
    "ExportHistory",
    "ExportItem",
    "IdempotentRequest",
    "Invoice",
    "MailPurge",
    "Mailbox",
    "MailboxRemoval",
    "Membership",
    "Payment",
    "Plan",
    "PlatformAccount",
    "Pool",
    "ProviderEvent",
    "Subscription",
    "SuspendedMailbox",
    "Tag",
    "User",
    "WalletEntry",
    "WarmupMessage",
    "WarmupSettings",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookEndpoint",
    "WebhookEvent",
    "Workspace",
    "mailbox_tags",
]
