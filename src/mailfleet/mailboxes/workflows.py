"""Background verification of a mailbox: SMTP and IMAP logins, then a DNS check.

One workflow per connection test, enqueued on a queue partitioned by SMTP host
so a burst of mailboxes on one provider never opens more than a few logins
there at once. Steps are idempotent: each re-reads the test and does nothing
when it already finished.
"""

from __future__ import annotations

import logging

from dbos import DBOS
from sqlalchemy import select

from mailfleet import metrics
from mailfleet.dns.checks import check_domain
from mailfleet.dns.resolver import make_resolver
from mailfleet.mailboxes import service
from mailfleet.models import ConnectionTest, ConnectionTestStatus, Mailbox
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)


@DBOS.step()
async def probe_mailbox_logins(test_id: str) -> service.LoginOutcome:
    """Log in to SMTP and IMAP at once. Returns results only: no secret leaves this step."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(ConnectionTest, test_id)
        if test is None or test.status != ConnectionTestStatus.PENDING:
            return {"skip": True}
        mailbox = await session.get(Mailbox, test.mailbox_id)
        if mailbox is None:
            return {"skip": True, "missing": True}
        credentials = service.mailbox_credentials(mailbox, current.keyring)
    return await service.probe_credentials(credentials, current.settings)


@DBOS.step()
async def record_verification(test_id: str, outcome: service.LoginOutcome) -> str:
    """Finish the test: success activates the mailbox; a failed first test deletes it."""
    async with runtime().database.transaction() as session:
        test = await session.get(ConnectionTest, test_id)
        if test is None:
            return "missing"
        status = await service.record_test_outcome(session, test, outcome)
        code = "OK" if status == "success" else (test.error_code or "UNKNOWN")
    metrics.VERIFICATIONS.labels(code).inc()
    return status


@DBOS.step()
async def check_mailbox_dns(test_id: str) -> str:
    """Fill setupStatus from a DNS check of the mailbox's domain."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(ConnectionTest, test_id)
        mailbox = await session.get(Mailbox, test.mailbox_id) if test else None
        if mailbox is None:
            return "missing"
        domain, provider = mailbox.domain, mailbox.provider
    mailbox_id = mailbox.id
    settings = current.settings
    try:
        resolver = make_resolver(settings.dns_nameservers or None, timeout=settings.dns_timeout)
        result = await check_domain(resolver, domain, provider=provider)
    except Exception:
        # A broken resolver setup must not undo a verified mailbox; the check can rerun.
        log.warning("DNS check of %s failed for mailbox %s", domain, mailbox_id, exc_info=True)
        return "unknown"
    async with current.database.transaction() as session:
        mailbox = await session.scalar(select(Mailbox).where(Mailbox.id == mailbox_id))
        if mailbox is not None:
            mailbox.setup_status = result.to_dict()
    return result.overall


@DBOS.workflow()
async def verify_mailbox(test_id: str) -> str:
    outcome = await probe_mailbox_logins(test_id)
    if outcome.get("skip") and not outcome.get("missing"):
        return "skipped"
    status = await record_verification(test_id, outcome)
    if status == ConnectionTestStatus.SUCCESS:
        await check_mailbox_dns(test_id)
    return status


async def requeue_pending_tests() -> int:
    """Re-enqueue pending tests whose enqueue was lost (a crash right after commit).

    Enqueueing under the same workflow id is a no-op for tests already queued,
    so every process may run this periodically.
    """
    async with runtime().database.transaction() as session:
        pending = await service.pending_test_ids(session)
    for test_id, host in pending:
        await service.enqueue_verification(test_id, host)
    return len(pending)
