"""All tables, imported here so Alembic and `Base.metadata` see every one."""

from mailfleet.models.accounts import ApiKey, User
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
from mailfleet.models.mailboxes import (
    MAILBOX_STATUSES,
    ConnectionTest,
    Mailbox,
    Pool,
    Tag,
    mailbox_tags,
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
]

__all__ = [
    "DELIVERY_STATUSES",
    "DNS_PROVIDERS",
    "DOMAIN_STATUSES",
    "ENCRYPTED_COLUMNS",
    "MAILBOX_STATUSES",
    "MAIL_PROVIDERS",
    "ROLES",
    "ApiKey",
    "CloudflareCredential",
    "ConnectionTest",
    "DkimKey",
    "DnsRecord",
    "Domain",
    "DomainDnsCheck",
    "Mailbox",
    "Membership",
    "Pool",
    "Tag",
    "User",
    "WebhookDelivery",
    "WebhookDeliveryAttempt",
    "WebhookEndpoint",
    "WebhookEvent",
    "Workspace",
    "mailbox_tags",
]
