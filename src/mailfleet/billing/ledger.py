"""The per-workspace billing account lock and the wallet ledger.

Every money movement and every seat reservation of a workspace first locks its
billing account row with an UPDATE: on PostgreSQL that is a row lock held to the
end of the transaction; on SQLite it takes the single writer lock. So the
balance read after the lock is the balance the movement applies to, and two
requests never spend the same money or take the same last seat.

The balance is the sum of the ledger. Rows are only inserted, each under a
unique idempotency key, so a retried step finds what it already wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import queue
from mailfleet.db import after_commit
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.sql import insert_ignoring_conflict
from mailfleet.models.billing import BillingAccount, BillingCounter, WalletEntry

log = logging.getLogger(__name__)


class InsufficientFunds(MailfleetError):
    status_code = 402
    code = "INSUFFICIENT_FUNDS"


class BillingDisabled(MailfleetError):
    status_code = 409
    code = "BILLING_DISABLED"


class PaymentProviderFailed(MailfleetError):
    status_code = 502
    code = "PAYMENT_PROVIDER_ERROR"


async def lock_account(session: AsyncSession, workspace_id: str, currency: str) -> BillingAccount:
    """The workspace's billing account, created if missing, locked to the end of
    the transaction."""
    bump = (
        update(BillingAccount)
        .where(BillingAccount.workspace_id == workspace_id)
        .values(lock_version=BillingAccount.lock_version + 1)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(bump)
    if getattr(result, "rowcount", 0) == 0:
        await insert_ignoring_conflict(
            session,
            BillingAccount,
            {"workspace_id": workspace_id, "currency": currency, "lock_version": 0},
        )
        await session.execute(bump)
    account = await session.get(BillingAccount, workspace_id, populate_existing=True)
    assert account is not None
    return account


async def read_account(session: AsyncSession, workspace_id: str, currency: str) -> BillingAccount:
    """The account without locking it; an unsaved default when there is none yet."""
    account = await session.get(BillingAccount, workspace_id)
    if account is None:
        return BillingAccount(
            workspace_id=workspace_id,
            currency=currency,
            lock_version=0,
            auto_recharge_enabled=False,
            auto_recharge_threshold=0,
            auto_recharge_amount=0,
        )
    return account


async def balance(session: AsyncSession, workspace_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(WalletEntry.amount), 0)).where(
            WalletEntry.workspace_id == workspace_id
        )
    )
    return int(total or 0)


async def find_entry(session: AsyncSession, workspace_id: str, key: str) -> WalletEntry | None:
    entry: WalletEntry | None = await session.scalar(
        select(WalletEntry).where(
            WalletEntry.workspace_id == workspace_id, WalletEntry.idempotency_key == key
        )
    )
    return entry


async def post_entry(
    session: AsyncSession,
    account: BillingAccount,
    *,
    amount: int,
    kind: str,
    description: str,
    key: str,
    payment_id: str | None = None,
    invoice_id: str | None = None,
    subscription_id: str | None = None,
    user_id: str | None = None,
) -> tuple[WalletEntry, bool]:
    """Write one ledger row (the caller holds `lock_account`). Returns the row and
    whether it is new: a key already used returns the earlier row untouched.

    A debit larger than the balance raises InsufficientFunds: the wallet never
    goes below zero.
    """
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("ledger amounts are integers in minor units")
    existing = await find_entry(session, account.workspace_id, key)
    if existing is not None:
        return existing, False
    before = await balance(session, account.workspace_id)
    if amount < 0 and before + amount < 0:
        raise insufficient_funds(before, -amount, account.currency)
    entry = WalletEntry(
        workspace_id=account.workspace_id,
        amount=amount,
        balance_after=before + amount,
        currency=account.currency,
        kind=kind,
        description=description[:500],
        idempotency_key=key,
        payment_id=payment_id,
        invoice_id=invoice_id,
        subscription_id=subscription_id,
        created_by_user_id=user_id,
    )
    session.add(entry)
    await session.flush()
    if amount > 0:
        await emit_event(
            session,
            account.workspace_id,
            "wallet.credited",
            {
                "entryId": entry.id,
                "kind": kind,
                "amount": amount,
                "currency": account.currency,
                "balance": entry.balance_after,
                "description": entry.description,
            },
        )
    elif amount < 0:
        await _after_debit(session, account, before, entry)
    return entry, True


def insufficient_funds(available: int, required: int, currency: str) -> InsufficientFunds:
    return InsufficientFunds(
        "The wallet balance is too low: top it up with POST /v1/wallet/balance",
        balance=available,
        required=required,
        currency=currency,
    )


async def _after_debit(
    session: AsyncSession, account: BillingAccount, before: int, entry: WalletEntry
) -> None:
    threshold = account.auto_recharge_threshold
    if threshold <= 0 or not before >= threshold > entry.balance_after:
        return
    await emit_event(
        session,
        account.workspace_id,
        "wallet.low_balance",
        {
            "balance": entry.balance_after,
            "threshold": threshold,
            "currency": account.currency,
            "autoRecharge": account.auto_recharge_enabled,
        },
    )
    if account.auto_recharge_enabled and account.provider_payment_method_id:
        workspace_id, trigger = account.workspace_id, f"low-balance:{entry.id}"

        async def recharge() -> None:
            await queue.enqueue_auto_recharge(workspace_id, trigger)

        enqueue_after_commit(session, recharge)


async def next_counter(session: AsyncSession, name: str) -> int:
    """The next value of a named counter; the row stays locked to the commit, so
    numbers are handed out in order and never twice."""
    bump = (
        update(BillingCounter)
        .where(BillingCounter.name == name)
        .values(value=BillingCounter.value + 1)
        .returning(BillingCounter.value)
        .execution_options(synchronize_session=False)
    )
    value = (await session.execute(bump)).scalar_one_or_none()
    if value is None:
        await insert_ignoring_conflict(session, BillingCounter, {"name": name, "value": 0})
        value = (await session.execute(bump)).scalar_one()
    return int(value)


async def emit_event(
    session: AsyncSession, workspace_id: str, event_type: str, data: dict[str, Any]
) -> None:
    """Announce a billing event to the workspace's webhooks, in this transaction."""
    from mailfleet.webhooks import service as webhooks

    await webhooks.emit(session, workspace_id, event_type, data)


def enqueue_after_commit(
    session: AsyncSession, enqueue: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `enqueue` once the transaction commits, outside any DBOS workflow or step
    context: billing code runs inside steps too, and DBOS refuses to start a
    workflow from a step. The enqueued ids are deterministic, so losing one to a
    crash is covered by the sweeper (or by the next attempt)."""

    async def run() -> None:
        # jobs.enqueue starts workflows outside any step's context itself.
        try:
            await enqueue()
        except Exception:
            log.warning("could not enqueue billing work after commit", exc_info=True)

    after_commit(session, run)
