"""One durable workflow per paid domain order: register each name exactly once,
connect it (zone, mail records, DKIM, DMARC), point its nameservers there, check
its DNS.

Exactly once, whatever crashes: before each create request the item's attempt
count is committed, so a step that runs again after a crash (DBOS resumes an
unfinished step from its start) knows a create may have reached the registrar,
and asks the registrar whether the name is ours already before sending another.
The registrar's answer is recorded in the same step; the money moved when the
order was charged, and a refund is keyed by the item, so neither repeats.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import TypedDict

from dbos import DBOS
from sqlalchemy import select

from mailfleet import jobs
from mailfleet.domains import checks, purchases
from mailfleet.domains.providers import Env
from mailfleet.domains.service import connect_domains
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import MailfleetError
from mailfleet.models import Domain, DomainOrder, DomainOrderItem, ItemStatus
from mailfleet.registrars import RegistrarError, registrar_for
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)


class ItemOutcome(TypedDict):
    item_id: str
    status: str


class RegistrarUnsure(Exception):
    """A create may or may not have reached the registrar: the step is retried, and
    the retry asks the registrar first."""


@DBOS.step()
async def order_items_step(order_id: str) -> list[str]:
    async with runtime().database.transaction() as session:
        return [item.id for item in await purchases.order_items(session, order_id)]


async def _load(item_id: str) -> tuple[DomainOrderItem, DomainOrder] | None:
    async with runtime().database.transaction() as session:
        item = await session.get(DomainOrderItem, item_id)
        if item is None:
            return None
        order = await session.get(DomainOrder, item.order_id)
        if order is None:
            return None
        session.expunge_all()
        return item, order


async def _fail(item_id: str, reason: str, new_cost: int | None = None) -> str:
    settings = runtime().settings
    async with runtime().database.transaction() as session:
        item = await session.get(DomainOrderItem, item_id)
        assert item is not None
        if item.status != ItemStatus.REGISTERING:
            return item.status
        order = await session.get(DomainOrder, item.order_id)
        assert order is not None
        await purchases.fail_item(session, settings, order, item, reason, new_cost=new_cost)
        return item.status


async def _registered(item_id: str, order_ref: str | None) -> str:
    async with runtime().database.transaction() as session:
        item = await session.get(DomainOrderItem, item_id)
        assert item is not None
        if item.status != ItemStatus.REGISTERING:
            return item.status
        order = await session.get(DomainOrder, item.order_id)
        assert order is not None
        await purchases.record_registered(session, order, item, order_ref)
        return item.status


# About ten minutes of tries (5 s, doubled) before the workflow gives the name up.
@DBOS.step(retries_allowed=True, max_attempts=8, interval_seconds=5.0, backoff_rate=2.0)
async def register_name_step(item_id: str) -> ItemOutcome:
    current = runtime()
    loaded = await _load(item_id)
    if loaded is None:
        return {"item_id": item_id, "status": "missing"}
    item, order = loaded
    if item.status != ItemStatus.REGISTERING:
        return {"item_id": item_id, "status": item.status}
    registrar = registrar_for(current.settings)
    if registrar is None or registrar.name != order.registrar:
        status = await _fail(item_id, f"{order.registrar} is no longer configured on this server")
        return {"item_id": item_id, "status": status}
    try:
        if item.register_attempts > 0 and await registrar.owns(item.name):
            # An earlier attempt reached the registrar; its answer was lost.
            log.info("domain %s is registered already (order %s)", item.name, order.id)
            return {"item_id": item_id, "status": await _registered(item_id, None)}
        answer = (await purchases.quote(registrar, [item.name], order.years, fresh=True))[item.name]
        if not answer.available:
            status = await _fail(item_id, f"{item.name} is no longer available")
            return {"item_id": item_id, "status": status}
        if answer.cost != item.cost:
            status = await _fail(
                item_id,
                f"The registrar's price changed since the quote ({item.cost} -> {answer.cost} "
                f"{answer.currency} minor units); not bought",
                new_cost=answer.cost,
            )
            return {"item_id": item_id, "status": status}
        async with current.database.transaction() as session:
            row = await session.get(DomainOrderItem, item_id)
            assert row is not None
            row.register_attempts += 1
        registration = await registrar.register(
            item.name,
            order.years,
            item.cost,
            premium=item.premium,
            contact=purchases.contact_of(order),
            idempotency_key=f"mailfleet-{item.id}",
        )
    except RegistrarError as exc:
        if exc.retryable:
            raise RegistrarUnsure(exc.message) from None
        status = await _fail(item_id, exc.message)
        return {"item_id": item_id, "status": status}
    finally:
        await registrar.aclose()
    return {"item_id": item_id, "status": await _registered(item_id, registration.order_ref)}


@DBOS.step()
async def give_up_step(item_id: str, reason: str) -> str:
    """The registrar stayed unreachable. A name never sent is failed and refunded;
    one whose create may have arrived is left registering (not refunded: it may be
    ours) for the sweeper's retry of the order (requeue_unfinished_orders) to settle."""
    loaded = await _load(item_id)
    if loaded is None:
        return "missing"
    item, _ = loaded
    if item.register_attempts == 0:
        return await _fail(item_id, f"The registrar could not be reached: {reason}")
    async with runtime().database.transaction() as session:
        row = await session.get(DomainOrderItem, item_id)
        assert row is not None
        row.reason = f"Waiting for the registrar: {reason}"[:500]
        return row.status


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=2.0, backoff_rate=2.0)
async def connect_name_step(item_id: str) -> ItemOutcome:
    """Connect the bought name through the domain connect, point its nameservers at
    the zone, and check its DNS. A failure here leaves the name registered (it is
    ours and paid for) with the reason."""
    current = runtime()
    env = Env(current.settings, current.keyring)
    loaded = await _load(item_id)
    if loaded is None:
        return {"item_id": item_id, "status": "missing"}
    item, order = loaded
    if item.status != ItemStatus.REGISTERED:
        return {"item_id": item_id, "status": item.status}
    try:
        async with current.database.transaction() as session:
            domain = await session.scalar(select(Domain).where(Domain.name == item.name))
            if domain is not None and domain.workspace_id != order.workspace_id:
                raise MailfleetError(f"{item.name} is connected to another workspace")
            if domain is None:
                [domain] = await connect_domains(
                    session,
                    env,
                    order.workspace_id,
                    [item.name],
                    order.dns_provider,
                    order.mail_provider,
                    single=True,
                )
            domain_id = domain.id
            nameservers = list(domain.nameservers or []) or list(current.settings.nameservers)
        if nameservers:
            registrar = registrar_for(current.settings)
            if registrar is None:
                raise MailfleetError(f"{order.registrar} is no longer configured on this server")
            try:
                await registrar.set_nameservers(item.name, nameservers)
            finally:
                await registrar.aclose()
        await _check_dns(env, domain_id)
    except (MailfleetError, RegistrarError) as exc:
        message = exc.message
        async with current.database.transaction() as session:
            row = await session.get(DomainOrderItem, item_id)
            assert row is not None
            row.reason = f"Registered, not connected yet: {message}"[:500]
        return {"item_id": item_id, "status": ItemStatus.REGISTERED}
    async with current.database.transaction() as session:
        row = await session.get(DomainOrderItem, item_id)
        assert row is not None
        row.status = ItemStatus.CONNECTED
        row.domain_id = domain_id
        row.connected_at = utcnow()
        row.reason = None
    return {"item_id": item_id, "status": ItemStatus.CONNECTED}


async def _check_dns(env: Env, domain_id: str) -> None:
    current = runtime()
    async with current.database.transaction() as session:
        domain = await session.get(Domain, domain_id)
        if domain is None:
            return
        plan = await checks.plan_dns_check(session, domain)
    outcome = await checks.run_dns_check(current.settings, plan)
    async with current.database.transaction() as session:
        domain = await session.get(Domain, domain_id)
        if domain is not None:
            await checks.record_dns_check(session, env, domain, outcome)


@DBOS.step()
async def finish_order_step(order_id: str) -> str:
    async with runtime().database.transaction() as session:
        order = await session.get(DomainOrder, order_id)
        if order is None:
            return "missing"
        return await purchases.finish_order(session, order)


@DBOS.workflow()
async def purchase_order(order_id: str) -> str:
    for item_id in await order_items_step(order_id):
        try:
            outcome = await register_name_step(item_id)
            status = outcome["status"]
        except Exception as exc:
            # DBOS gave up retrying the step: the registrar stayed unreachable.
            status = await give_up_step(item_id, str(exc)[:300])
        if status == ItemStatus.REGISTERED:
            await connect_name_step(item_id)
    return await finish_order_step(order_id)


async def requeue_unfinished_orders() -> int:
    """Sweeper: every paid order not finished gets its workflow again. One whose
    enqueue a crash lost starts now; one whose workflow ended with a name left
    registering (the registrar stayed unreachable after a create may have reached
    it) is run again under the hour's retry id, which asks the registrar first.
    Orders whose workflow is still queued or running are left alone."""
    async with runtime().database.transaction() as session:
        order_ids = await purchases.unfinished_orders(session)
    for order_id in order_ids:
        primary = purchases.workflow_id(order_id)
        status = await _workflow_status(primary)
        if status is None or status in ("ENQUEUED", "PENDING"):
            await purchases.enqueue(order_id)
            continue
        retry = f"{primary}-retry-{int(utcnow().timestamp() // 3600)}"
        if await _workflow_status(retry) is None:
            await jobs.enqueue(
                purchases.PURCHASE_QUEUE, purchase_order, order_id, workflow_id=retry
            )
    return len(order_ids)


async def _workflow_status(workflow_id: str) -> str | None:
    # Outside any step's context (the sweeper runs in one), as jobs.enqueue does.
    task = asyncio.get_running_loop().create_task(
        DBOS.get_workflow_status_async(workflow_id), context=contextvars.Context()
    )
    found = await task
    return found.status if found is not None else None
