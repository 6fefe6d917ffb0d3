"""Renewals run as DBOS workflows enqueued by the sweeper: paid from the wallet,
paid by auto-recharge (Stripe faked on loopback), or unpaid (past_due, then the
mailboxes paused after the grace period, resumed by a payment)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from dbos import DBOS
from sqlalchemy import select

from mailfleet.billing import queue, seats, workflows
from mailfleet.billing.money import add_months
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.models import Mailbox
from mailfleet.models.billing import BillingAccount, Payment, Subscription, WalletEntry
from tests.billing.conftest import (
    add_mailboxes,
    assert_ledger_consistent,
    at,
    create_plan,
    grant,
    mailbox_states,
    subscribe,
)
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import Account
from tests.jobs.ticks import clear_of_sweeper_ticks


async def make_due(database: Database, subscription_id: str, ago: timedelta) -> None:
    """Move the subscription's period so that it ended `ago` (time travel by data),
    at a moment when the scheduled sweeper will not renew it before the test's own
    sweep does."""
    await clear_of_sweeper_ticks(window=5.0)
    async with database.transaction() as session:
        subscription = await session.get(Subscription, subscription_id)
        assert subscription is not None
        end = (utcnow() - ago).replace(microsecond=0)
        subscription.anchor_at = subscription.current_period_start = add_months(end, -1)
        subscription.current_period_end = end
        subscription.periods_started = 1


async def run_sweeper() -> list[Any]:
    """One sweep, then every workflow it enqueued, to its result."""
    ids = await workflows.enqueue_due_renewals()
    return [await result_of(workflow_id) for workflow_id in ids]


async def result_of(workflow_id: str) -> Any:
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    return await asyncio.wait_for(handle.get_result(), timeout=90)


async def subscription_row(database: Database, subscription_id: str) -> Subscription:
    async with database.transaction() as session:
        subscription = await session.get(Subscription, subscription_id)
        assert subscription is not None
        return subscription


async def test_renewal_with_enough_balance_charges_once(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=250)
    await grant(client, admin, owner.workspace_id, 2000)
    sub = await subscribe(client, owner, plan["id"], 2)
    await make_due(database, sub["id"], timedelta(minutes=5))
    before = await subscription_row(database, sub["id"])
    assert await run_sweeper() == ["renewed"]
    after = await subscription_row(database, sub["id"])
    assert after.current_period_start == before.current_period_end
    assert after.current_period_end == add_months(before.current_period_end, 1)
    assert after.status == "active"
    # The sweeper again, and the same workflow enqueued by hand: nothing more is charged.
    assert await run_sweeper() == []
    await workflows.enqueue_renewal(sub["id"], before.current_period_end, "due")
    assert await assert_ledger_consistent(client, owner, database) == 2000 - 500 - 500
    invoices = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert [(i["kind"], i["total"]) for i in invoices] == [("renewal", 500), ("subscription", 500)]
    assert at(invoices[0]["periodStart"]) == before.current_period_end


async def test_renewal_short_of_money_goes_past_due_then_pauses_then_resumes(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 300)
    sub = await subscribe(client, owner, plan["id"], 3)
    await add_mailboxes(database, owner.workspace_id, 2)
    [paused_by_owner] = await add_mailboxes(
        database, owner.workspace_id, 1, status="paused", start=9
    )

    await make_due(database, sub["id"], timedelta(hours=1))
    assert await run_sweeper() == ["past_due"]
    row = await subscription_row(database, sub["id"])
    assert row.status == "past_due"
    assert row.suspended_at is None
    assert set((await mailbox_states(database, owner.workspace_id)).values()) == {
        ("active", True),
        ("paused", False),
    }
    assert await run_sweeper() == [], "no retry until the grace period ends or money comes"

    # Four days later (grace is three): the grace attempt pauses the mailboxes.
    await make_due(database, sub["id"], timedelta(days=4))
    assert await run_sweeper() == ["suspended"]
    states = await mailbox_states(database, owner.workspace_id)
    assert states == {
        "box0@example.test": ("paused", False),
        "box1@example.test": ("paused", False),
        "box9@example.test": ("paused", False),
    }
    assert await run_sweeper() == []
    async with database.transaction() as session:
        box0 = await session.scalar(select(Mailbox.id).where(Mailbox.email == "box0@example.test"))
        assert box0 is not None
        assert await seats.mailbox_suspended(session, box0)
        assert not await seats.mailbox_suspended(session, paused_by_owner)

    # Money arrives: the renewal is retried at once and the paused mailboxes resume,
    # except the one its owner had paused.
    credit = await grant(client, admin, owner.workspace_id, 300)
    period_end = (await subscription_row(database, sub["id"])).current_period_end
    retry = queue.renewal_workflow_id(sub["id"], period_end, f"credit-{credit['entry']['id']}")
    assert await result_of(retry) == "renewed"
    states = await mailbox_states(database, owner.workspace_id)
    assert states["box0@example.test"] == ("active", True)
    assert states["box1@example.test"] == ("active", True)
    assert states["box9@example.test"] == ("paused", False)
    row = await subscription_row(database, sub["id"])
    assert (row.status, row.suspended_at, row.past_due_since) == ("active", None, None)
    assert await assert_ledger_consistent(client, owner, database) == 0


async def _save_card(database: Database, workspace_id: str) -> None:
    async with database.transaction() as session:
        account = await session.get(BillingAccount, workspace_id)
        assert account is not None
        account.provider_customer_id = "cus_saved"
        account.provider_payment_method_id = "pm_saved"


async def test_renewal_with_auto_recharge_charges_the_saved_card(
    client: httpx.AsyncClient,
    fake_stripe: FakeStripe,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=500)
    await grant(client, admin, owner.workspace_id, 1000)
    sub = await subscribe(client, owner, plan["id"], 2)
    await _save_card(database, owner.workspace_id)
    configured = await client.post(
        "/v1/wallet/auto-recharge",
        json={"enabled": True, "threshold": 200, "amount": 300},
        headers=owner.headers,
    )
    assert configured.status_code == 200, configured.text
    assert configured.json()["data"] == {"enabled": True, "threshold": 200, "amount": 300}

    await make_due(database, sub["id"], timedelta(minutes=1))
    assert await run_sweeper() == ["renewed"]
    [charge] = fake_stripe.posts("/v1/payment_intents")
    async with database.transaction() as session:
        payment = await session.scalar(select(Payment).where(Payment.purpose == "auto_recharge"))
    assert payment is not None
    assert payment.status == "succeeded"
    # What the renewal lacked (1000) plus the threshold (200), being more than `amount`.
    assert charge.form == {
        "amount": "1200",
        "currency": "usd",
        "customer": "cus_saved",
        "payment_method": "pm_saved",
        "off_session": "true",
        "confirm": "true",
        "description": "Mailfleet wallet auto-recharge",
        "metadata[payment_id]": payment.id,
        "metadata[workspace_id]": owner.workspace_id,
    }
    assert charge.headers["idempotency-key"] == f"mailfleet-payment-{payment.id}"
    assert charge.headers["authorization"] == "Bearer sk_test_mailfleet"
    assert payment.provider_ref == "pi_test_1"
    assert await assert_ledger_consistent(client, owner, database) == 200
    kinds = [
        (i["kind"], i["total"])
        for i in (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    ]
    assert kinds == [("renewal", 1000), ("topup", 1200), ("subscription", 1000)]


async def test_declined_auto_recharge_is_tried_once_per_renewal(
    client: httpx.AsyncClient,
    fake_stripe: FakeStripe,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=500)
    await grant(client, admin, owner.workspace_id, 500)
    sub = await subscribe(client, owner, plan["id"], 1)
    await _save_card(database, owner.workspace_id)
    await client.post(
        "/v1/wallet/auto-recharge",
        json={"enabled": True, "threshold": 0, "amount": 500},
        headers=owner.headers,
    )
    fake_stripe.decline_next_charge = True
    await make_due(database, sub["id"], timedelta(days=5))
    # Grace (3 days) already over: the same attempt marks it past_due and pauses.
    assert await run_sweeper() == ["suspended"]
    async with database.transaction() as session:
        payment = await session.scalar(select(Payment).where(Payment.purpose == "auto_recharge"))
    assert payment is not None
    assert (payment.status, payment.failure_message) == (
        "failed",
        "Your card has insufficient funds.",
    )
    row = await subscription_row(database, sub["id"])
    assert row.status == "past_due"
    assert row.suspended_at is not None
    # A later attempt for the same renewal leaves the card alone.
    attempt = await workflows.enqueue_renewal(sub["id"], row.current_period_end, "by-hand")
    assert await result_of(attempt) == "past_due"
    assert len(fake_stripe.posts("/v1/payment_intents")) == 1
    assert await assert_ledger_consistent(client, owner, database) == 0


async def test_low_balance_after_a_charge_recharges_in_the_background(
    client: httpx.AsyncClient,
    fake_stripe: FakeStripe,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=400)
    await grant(client, admin, owner.workspace_id, 1000)
    await _save_card(database, owner.workspace_id)
    await client.post(
        "/v1/wallet/auto-recharge",
        json={"enabled": True, "threshold": 700, "amount": 2500},
        headers=owner.headers,
    )
    await subscribe(client, owner, plan["id"], 1)  # 1000 -> 600, under 700
    async with database.transaction() as session:
        charge_entry = await session.scalar(select(WalletEntry.id).where(WalletEntry.amount < 0))
    # Enqueued when the subscription's transaction committed, before it answered.
    workflow_id = f"billing-auto-recharge-{owner.workspace_id}-low-balance:{charge_entry}"
    assert await result_of(workflow_id) == "succeeded"
    assert await assert_ledger_consistent(client, owner, database) == 3100
    [charge] = fake_stripe.posts("/v1/payment_intents")
    assert charge.form["amount"] == "2500"


async def test_cancellation_ends_at_the_renewal(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 500)
    sub = await subscribe(client, owner, plan["id"], 2)
    await add_mailboxes(database, owner.workspace_id, 2)
    await client.delete(f"/v1/subscriptions/{sub['id']}", headers=owner.headers)
    await make_due(database, sub["id"], timedelta(minutes=1))
    assert await run_sweeper() == ["canceled"]
    row = await subscription_row(database, sub["id"])
    assert row.status == "canceled"
    assert row.ended_at == row.current_period_end
    assert set((await mailbox_states(database, owner.workspace_id)).values()) == {("paused", False)}
    assert await assert_ledger_consistent(client, owner, database) == 300
    # A new subscription brings the paused mailboxes back.
    await subscribe(client, owner, plan["id"], 2)
    assert set((await mailbox_states(database, owner.workspace_id)).values()) == {("active", True)}


async def test_mailbox_removal_waits_for_the_renewal(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 1000)
    sub = await subscribe(client, owner, plan["id"], 3)
    first, _, _ = await add_mailboxes(database, owner.workspace_id, 3)
    async with database.transaction() as session:
        remove_at = await seats.schedule_mailbox_removal(session, owner.workspace_id, first)
        again = await seats.schedule_mailbox_removal(session, owner.workspace_id, first)
    assert remove_at is not None
    assert remove_at == again == at(sub["currentPeriodEnd"])
    listed = (await client.get(f"/v1/subscriptions/{sub['id']}", headers=owner.headers)).json()
    assert listed["data"]["scheduledRemovals"] == 1
    assert len(await mailbox_states(database, owner.workspace_id)) == 3, "kept until renewal"

    await make_due(database, sub["id"], timedelta(minutes=1))
    assert await run_sweeper() == ["renewed"]
    async with database.transaction() as session:
        assert await session.get(Mailbox, first) is None
    row = await subscription_row(database, sub["id"])
    assert row.quantity == 2
    assert await assert_ledger_consistent(client, owner, database) == 1000 - 300 - 200


async def test_removal_is_immediate_when_not_billed(
    database: Database, owner: Account, settings: Settings
) -> None:
    [mailbox_id] = await add_mailboxes(database, owner.workspace_id, 1)
    async with database.transaction() as session:
        assert await seats.schedule_mailbox_removal(session, owner.workspace_id, mailbox_id) is None


async def test_a_new_plan_price_applies_from_the_next_renewal(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 1000)
    sub = await subscribe(client, owner, plan["id"], 2)
    await client.put(
        f"/v1/plans/{plan['id']}", json={"pricePerMailbox": 150}, headers=admin.headers
    )
    read = (await client.get(f"/v1/subscriptions/{sub['id']}", headers=owner.headers)).json()
    assert (read["data"]["unitAmount"], read["data"]["amount"]) == (100, 200)
    assert read["data"]["nextRenewalAmount"] == 300
    await make_due(database, sub["id"], timedelta(minutes=1))
    assert await run_sweeper() == ["renewed"]
    read = (await client.get(f"/v1/subscriptions/{sub['id']}", headers=owner.headers)).json()
    assert (read["data"]["unitAmount"], read["data"]["amount"]) == (150, 300)
    assert await assert_ledger_consistent(client, owner, database) == 1000 - 200 - 300
