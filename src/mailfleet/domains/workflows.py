"""Periodic DNS rechecks: one durable workflow per domain, enqueued by a sweeper.

The sweeper (a DBOS schedule, jobs.SWEEPERS) enqueues the domains whose last
check is older than MAILFLEET_DNS_RECHECK_INTERVAL. Workflow ids carry the
interval's time bucket, so enqueueing the same domain again in the same interval
(a test, a manual sweep) enqueues it once.
"""

from __future__ import annotations

import logging

from dbos import DBOS

from mailfleet import jobs
from mailfleet.domains import checks, service
from mailfleet.kit.clock import utcnow
from mailfleet.models import Domain
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

CHECK_QUEUE = "domain_checks"


@DBOS.step()
async def recheck_domain_step(domain_id: str) -> str:
    """Look the domain's records up and store the result (changes become history)."""
    current = runtime()
    env = service.Env(current.settings, current.keyring)
    async with current.database.transaction() as session:
        domain = await session.get(Domain, domain_id)
        if domain is None:
            return "missing"
        plan = await checks.plan_dns_check(session, domain)
    # No transaction is held while DNS answers.
    outcome = await checks.run_dns_check(current.settings, plan)
    async with current.database.transaction() as session:
        domain = await session.get(Domain, domain_id)
        if domain is None:
            return "missing"
        changes = await checks.record_dns_check(session, env, domain, outcome)
    if changes:
        log.info("domain %s DNS check changed: %s", domain_id, changes)
    return str(outcome.result["overall"])


@DBOS.workflow()
async def recheck_domain_dns(domain_id: str) -> str:
    return await recheck_domain_step(domain_id)


def recheck_workflow_id(domain_id: str, interval: float) -> str:
    bucket = int(utcnow().timestamp() // interval)
    return f"domain-dns-check-{domain_id}-{bucket}"


async def enqueue_due_dns_checks() -> int:
    """Enqueue a recheck for every domain due one; idempotent within an interval."""
    current = runtime()
    interval = current.settings.dns_recheck_interval
    async with current.database.transaction() as session:
        due = await checks.due_for_check(session, current.settings)
    for domain_id in due:
        await jobs.enqueue(
            CHECK_QUEUE,
            recheck_domain_dns,
            domain_id,
            workflow_id=recheck_workflow_id(domain_id, interval),
        )
    return len(due)
