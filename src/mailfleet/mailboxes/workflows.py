"""Background verification of a mailbox: SMTP and IMAP logins, then a DNS check.

One workflow per connection test, enqueued on a queue partitioned by SMTP host
so a burst of mailboxes on one provider never opens more than a few logins
there at once. Steps are idempotent: each re-reads the test and does nothing
when it already finished.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from dbos import DBOS
from sqlalchemy import select

from mailfleet.dns.checks import check_domain
from mailfleet.dns.resolver import make_resolver
from mailfleet.kit.clock import utcnow
from mailfleet.mail.probes import ImapSettings, SmtpSettings, probe_imap, probe_smtp, security_for
from mailfleet.models import ConnectionTest, Mailbox
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)


def _tls_context() -> ssl.SSLContext:
    settings = runtime().settings
    return ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )


@DBOS.step()
async def probe_mailbox_logins(test_id: str) -> dict[str, Any]:
    """Log in to SMTP and IMAP at once. Returns results only: no secret leaves this step."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(ConnectionTest, test_id)
        if test is None or test.status != "pending":
            return {"skip": True}
        mailbox = await session.get(Mailbox, test.mailbox_id)
        if mailbox is None:
            return {"skip": True, "missing": True}
        keyring = current.keyring
        smtp = SmtpSettings(
            host=mailbox.smtp_host,
            port=mailbox.smtp_port,
            security=security_for(mailbox.smtp_port, mailbox.smtp_secure),
            username=mailbox.smtp_username,
            password=keyring.decrypt(mailbox.smtp_password_enc),
        )
        imap = ImapSettings(
            host=mailbox.imap_host,
            port=mailbox.imap_port,
            security=security_for(mailbox.imap_port, mailbox.imap_secure),
            username=mailbox.imap_username,
            password=keyring.decrypt(mailbox.imap_password_enc),
        )
    settings = current.settings
    options: dict[str, Any] = {
        "timeout": settings.mail_timeout,
        "tls_context": _tls_context(),
        "allow_private": settings.allow_private_networks,
        "nameservers": settings.dns_nameservers or None,
    }
    smtp_result, imap_result = await asyncio.gather(
        probe_smtp(smtp, **options), probe_imap(imap, **options)
    )
    return {"smtp": smtp_result.to_dict(), "imap": imap_result.to_dict()}


def _first_failure(outcome: dict[str, Any]) -> dict[str, Any] | None:
    for protocol in ("smtp", "imap"):
        result: dict[str, Any] = outcome[protocol]
        if not result["ok"]:
            return result
    return None


@DBOS.step()
async def record_verification(test_id: str, outcome: dict[str, Any]) -> str:
    """Finish the test: success activates the mailbox; a failed first test deletes it."""
    async with runtime().database.transaction() as session:
        test = await session.get(ConnectionTest, test_id)
        if test is None:
            return "missing"
        if test.status != "pending":
            return test.status
        mailbox = await session.get(Mailbox, test.mailbox_id)
        now = utcnow()
        test.finished_at = now
        if outcome.get("missing") or mailbox is None:
            test.status = "failed"
            test.error_code = "MAILBOX_DELETED"
            test.error_message = "The mailbox was deleted before the test finished"
            test.mailbox_deleted = True
            return test.status
        test.smtp_result = outcome["smtp"]
        test.imap_result = outcome["imap"]
        failure = _first_failure(outcome)
        if failure is None:
            test.status = "success"
            mailbox.status = "active"
            mailbox.sending_enabled = True
            mailbox.last_verified_at = now
            mailbox.last_error = None
        else:
            test.status = "failed"
            test.error_code = failure["code"]
            test.error_message = f"{failure['protocol'].upper()}: {failure['message']}"[:1000]
            if test.kind == "initial":
                test.mailbox_deleted = True
                await session.delete(mailbox)
            else:
                mailbox.status = "error"
                mailbox.sending_enabled = False
                mailbox.last_error = test.error_message
        log.info("connection test %s for mailbox %s: %s", test.id, test.mailbox_id, test.status)
        return test.status


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
    if status == "success":
        await check_mailbox_dns(test_id)
    return status


async def requeue_pending_tests() -> int:
    """Re-enqueue pending tests whose enqueue was lost (a crash right after commit).

    Enqueueing under the same workflow id is a no-op for tests already queued,
    so every process may run this periodically.
    """
    from mailfleet.mailboxes.service import enqueue_verification, pending_test_ids

    async with runtime().database.transaction() as session:
        pending = await pending_test_ids(session)
    for test_id, host in pending:
        await enqueue_verification(test_id, host)
    return len(pending)
