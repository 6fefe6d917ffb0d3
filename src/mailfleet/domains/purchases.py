"""Buying domains: availability and prices, purchase orders, the wallet debit (or a
payment link), refunds of names that could not be registered.

An order is created only once every name has been validated and quoted, so bad
input charges nothing. With billing on, the quoted total leaves the wallet in
one ledger movement (`domain-order:<id>`); when the wallet cannot cover it, the
order waits for payment (a Stripe Checkout from the payment link, or any credit)
and is charged by the hook billing calls after money comes in. A paid order (or
any order with billing off) runs one durable workflow (purchase_workflows.py)
that registers, connects and checks each name; a name that fails is refunded in
its own movement (`domain-refund:<item>`).

Services flush, never commit; the workflow's steps own their transactions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import invoices, ledger, plans, wallet
from mailfleet.billing.invoices import InvoiceLine
from mailfleet.billing.payments import PaymentProvider
from mailfleet.billing.schemas import TopUpIn
from mailfleet.config import Settings
from mailfleet.dns.records import RecordError, to_ascii_domain
from mailfleet.domains.providers import Env, NotConfigured, make_provider
from mailfleet.domains.purchase_schemas import ContactIn, PurchaseIn
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict, MailfleetError, RateLimited, ValidationFailed
from mailfleet.kit.names import registrable_domain
from mailfleet.kit.pagination import Page
from mailfleet.kit.repository import Repository
from mailfleet.models import (
    Domain,
    DomainOrder,
    DomainOrderItem,
    ItemStatus,
    OrderStatus,
    Payment,
    PaymentStatus,
    User,
    Workspace,
)
from mailfleet.registrars import (
    Availability,
    Contact,
    Registrar,
    RegistrarError,
    RegistrarRateLimited,
    UnsupportedTld,
    missing_settings,
    registrar_for,
)

log = logging.getLogger(__name__)

PURCHASE_WORKFLOW = "mailfleet.domains.purchase_workflows:purchase_order"
PURCHASE_QUEUE = "default"
# Seconds a registrar's availability answer is reused (a search, then the purchase).
QUOTE_CACHE_SECONDS = 120.0
# Names no registrar sells (RFC 2606, RFC 6761, RFC 6762, RFC 7686, ICANN's .internal).
RESERVED_TLDS = frozenset(
    {"test", "example", "invalid", "localhost", "local", "onion", "internal", "arpa", "home.arpa"}
)
RESERVED_NAMES = frozenset({"example.com", "example.net", "example.org"})
# Prefixes and suffixes cold-email teams put around a brand for look-alike domains.
SUGGESTION_PREFIXES = ("get", "try", "mail", "use")
SUGGESTION_SUFFIXES = ("hq", "mail", "team")
MAX_TLDS = 10
MAX_SEARCH_NAMES = 50


class RegistrarFailed(MailfleetError):
    status_code = 502
    code = "REGISTRAR_ERROR"


class PaidFromWallet(Conflict):
    """Asked for a payment link, the order was covered by the wallet meanwhile and
    is charged now: a 409 that says so, with the charge kept."""

    keeps_writes = True


class OrderRepository(Repository[DomainOrder], model=DomainOrder, noun="Order"): ...


def workflow_id(order_id: str) -> str:
    return f"domain-order-{order_id}"


# ------------------------------------------------------------------ names and prices


def purchasable_name(raw: str, where: str) -> tuple[str, str]:
    """(ascii, unicode) of a name one can register, or a 400 naming `where`."""
    try:
        name, unicode_name = to_ascii_domain(raw, where)
    except RecordError as exc:
        raise ValidationFailed.for_field(where, exc.message) from None
    tld = name.rsplit(".", 1)[-1]
    if tld in RESERVED_TLDS or name in RESERVED_NAMES or name.endswith(".home.arpa"):
        raise ValidationFailed.for_field(where, f"{name} is reserved and cannot be registered")
    registrable = registrable_domain(name)
    if registrable is None:
        raise ValidationFailed.for_field(where, f"{name} is a public suffix, not a domain name")
    if registrable != name:
        raise ValidationFailed.for_field(
            where, f"{name} is a subdomain; register {registrable} and add {name} to it"
        )
    return name, unicode_name


def with_markup(settings: Settings, cost: int) -> int:
    """The customer's price: the registrar's plus MAILFLEET_DOMAIN_MARKUP_PERCENT,
    rounded up to the minor unit (a markup never rounds to a loss)."""
    basis = round(settings.domain_markup_percent * 100)
    return -(-cost * (10_000 + basis) // 10_000)


def require_registrar(settings: Settings) -> Registrar:
    registrar = registrar_for(settings)
    if registrar is None:
        missing = ", ".join(missing_settings(settings))
        raise NotConfigured(f"Buying domains is not configured on this server ({missing})")
    return registrar


# (registrar, name, years) -> (expires at, answer); per process.
_quotes: dict[tuple[str, str, int], tuple[float, Availability]] = {}


def forget_quotes() -> None:
    _quotes.clear()


async def quote(
    registrar: Registrar, names: Sequence[str], years: int, *, fresh: bool = False
) -> dict[str, Availability]:
    """The registrar's answer for each name, from the brief cache unless `fresh`.
    Raises UnsupportedTld, RegistrarRateLimited or RegistrarError."""
    now = time.monotonic()
    found: dict[str, Availability] = {}
    wanted = []
    for name in names:
        cached = None if fresh else _quotes.get((registrar.name, name, years))
        if cached and cached[0] > now:
            found[name] = cached[1]
        else:
            wanted.append(name)
    if wanted:
        try:
            answers = await registrar.check(wanted, years)
        except RegistrarRateLimited as exc:
            for answer in exc.checked:
                _quotes[(registrar.name, answer.name, years)] = (now + QUOTE_CACHE_SECONDS, answer)
                found[answer.name] = answer
            exc.checked = list(found.values())
            raise
        for answer in answers:
            _quotes[(registrar.name, answer.name, years)] = (now + QUOTE_CACHE_SECONDS, answer)
            found[answer.name] = answer
    return found


@dataclass(frozen=True)
class NameQuote:
    name: str
    unicode_name: str
    available: bool | None
    premium: bool
    price: int | None
    currency: str
    years: int
    reason: str | None = None
    retry_after: float | None = None


def _search_names(
    query: str | None, tlds: str | None, domains: str | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str | None]:
    """(names asked for, suggestions, the normalised query)."""
    if domains:
        raw = [part.strip() for part in domains.split(",") if part.strip()]
        if len(raw) > MAX_SEARCH_NAMES:
            raise ValidationFailed.for_field("domains", f"at most {MAX_SEARCH_NAMES} names")
        asked = []
        for index, part in enumerate(raw):
            name = purchasable_name(part, f"domains.{index}")
            if name not in asked:
                asked.append(name)
        if not asked:
            raise ValidationFailed.for_field("domains", "give at least one name")
        return asked, [], None
    if not query or not query.strip():
        raise ValidationFailed.for_field("query", "give `query` (a brand) or `domains`")
    label = query.strip().lower()
    if "." in label:
        label = label.split(".", 1)[0]
    tld_list = [t.strip().lower().lstrip(".") for t in (tlds or "com").split(",") if t.strip()]
    if not tld_list or len(tld_list) > MAX_TLDS:
        raise ValidationFailed.for_field("tlds", f"give 1 to {MAX_TLDS} TLDs, comma-separated")
    asked = []
    for tld in dict.fromkeys(tld_list):
        asked.append(purchasable_name(f"{label}.{tld}", "query" if tld_list else "tlds"))
    first = tld_list[0]
    suggestions = []
    for variant in [f"{p}{label}" for p in SUGGESTION_PREFIXES] + [
        f"{label}{s}" for s in SUGGESTION_SUFFIXES
    ]:
        if variant == label or len(variant) > 63:
            continue
        suggestions.append(purchasable_name(f"{variant}.{first}", "query"))
    return asked, suggestions, label


async def search(
    settings: Settings,
    query: str | None,
    tlds: str | None,
    domains: str | None,
    years: int,
) -> tuple[str | None, list[NameQuote], list[NameQuote]]:
    asked, suggested, label = _search_names(query, tlds, domains)
    registrar = require_registrar(settings)
    try:
        if years > registrar.max_years:
            raise _too_many_years(registrar)
        supported = await _supported(registrar)
        results = await _quote_all(settings, registrar, asked, years, supported)
        suggestions = await _quote_all(settings, registrar, suggested, years, supported)
    finally:
        await registrar.aclose()
    # A suggestion is worth showing only when it can be bought.
    return label, results, [s for s in suggestions if s.available]


async def _supported(registrar: Registrar) -> set[str]:
    try:
        return await registrar.supported_tlds()
    except RegistrarRateLimited as exc:
        raise RateLimited(exc.message, retryAfter=int(exc.retry_after) + 1) from None
    except RegistrarError as exc:
        raise RegistrarFailed(exc.message) from None


def _too_many_years(registrar: Registrar) -> ValidationFailed:
    return ValidationFailed.for_field(
        "years", f"{registrar.name} registers names for at most {registrar.max_years} year(s)"
    )


def _tld_of(name: str) -> str:
    registrable = registrable_domain(name) or name
    return registrable.partition(".")[2]


async def _quote_all(
    settings: Settings,
    registrar: Registrar,
    names: Sequence[tuple[str, str]],
    years: int,
    supported: set[str],
) -> list[NameQuote]:
    """One batch of checks for the names of supported TLDs; when the registrar's
    limit stops it, the names it did not reach are reported unchecked rather than
    sent anyway (it would refuse them, or lock the account)."""
    sellable = [name for name, _ in names if _tld_of(name) in supported]
    answers: dict[str, Availability] = {}
    limited: RegistrarRateLimited | None = None
    if sellable:
        try:
            answers = await quote(registrar, sellable, years)
        except RegistrarRateLimited as exc:
            limited = exc
            answers = {answer.name: answer for answer in exc.checked}
        except RegistrarError as exc:
            raise RegistrarFailed(exc.message) from None
    results: list[NameQuote] = []
    for name, unicode_name in names:
        answer = answers.get(name)
        if _tld_of(name) not in supported:
            reason: str | None = f"{registrar.name} does not sell .{_tld_of(name)} names"
            results.append(
                NameQuote(name, unicode_name, False, False, None, registrar.currency, years, reason)
            )
        elif answer is None:
            assert limited is not None
            results.append(
                NameQuote(
                    name,
                    unicode_name,
                    None,
                    False,
                    None,
                    registrar.currency,
                    years,
                    "rate_limited",
                    round(limited.retry_after, 1),
                )
            )
        else:
            price = with_markup(settings, answer.cost) if answer.cost is not None else None
            reason = answer.reason if not answer.available else None
            results.append(
                NameQuote(
                    name,
                    unicode_name,
                    answer.available,
                    answer.premium,
                    price,
                    registrar.currency,
                    years,
                    reason,
                )
            )
    return results


# ------------------------------------------------------------------------ orders


def fingerprint(data: PurchaseIn) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _by_key(session: AsyncSession, workspace_id: str, key: str) -> DomainOrder | None:
    found: DomainOrder | None = await session.scalar(
        select(DomainOrder).where(
            DomainOrder.workspace_id == workspace_id, DomainOrder.idempotency_key == key
        )
    )
    return found


async def create_order(
    session: AsyncSession,
    env: Env,
    workspace_id: str,
    user_id: str | None,
    data: PurchaseIn,
    idempotency_key: str | None,
) -> tuple[DomainOrder, bool]:
    """Validate, quote and record an order; charge it from the wallet when billing is
    on and it can. Returns the order and whether it was created now (False: a
    retry with the same Idempotency-Key found it)."""
    settings = env.settings
    digest = fingerprint(data)
    if idempotency_key:
        previous = await _by_key(session, workspace_id, idempotency_key)
        if previous is not None:
            if previous.fingerprint != digest:
                raise ValidationFailed(
                    "This Idempotency-Key was used with a different request",
                    [{"field": "Idempotency-Key", "in": "header", "message": "already used"}],
                )
            return previous, False
    wanted: list[tuple[str, str]] = []
    for index, raw in enumerate(data.domains):
        where = f"domains.{index}"
        name, unicode_name = purchasable_name(raw, where)
        if any(name == seen for seen, _ in wanted):
            raise ValidationFailed.for_field(where, f"{name} is listed twice")
        wanted.append((name, unicode_name))
    names = [name for name, _ in wanted]
    await _refuse_owned(session, names)

    registrar = require_registrar(settings)
    try:
        if data.years > registrar.max_years:
            raise _too_many_years(registrar)
        billing_on = plans.billing_enabled(settings)
        if billing_on and settings.billing_currency != registrar.currency:
            raise NotConfigured(
                f"{registrar.name} prices names in {registrar.currency}, and wallets here are "
                f"in {settings.billing_currency}"
            )
        if registrar.name == "namecheap" and data.contact is None:
            raise ValidationFailed.for_field(
                "contact", "Namecheap registers a name with its registrant: give `contact`"
            )
        # The DNS provider must be usable before anything is bought for it.
        provider = await make_provider(session, env, workspace_id, data.dns_provider)
        await provider.aclose()
        quotes = await _purchase_quotes(registrar, wanted, data)
    finally:
        await registrar.aclose()

    order = DomainOrder(
        workspace_id=workspace_id,
        status=OrderStatus.PROCESSING,
        registrar=registrar.name,
        years=data.years,
        dns_provider=data.dns_provider,
        mail_provider=data.mail_provider,
        auto_renew=data.auto_renew,
        total=0,
        currency=registrar.currency,
        charged=False,
        contact=data.contact.model_dump(mode="json") if data.contact else None,
        idempotency_key=idempotency_key,
        fingerprint=digest,
        created_by_user_id=user_id,
    )
    session.add(order)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict("A request with this Idempotency-Key is being processed; retry") from None
    items = []
    for name, unicode_name in wanted:
        answer = quotes[name]
        assert answer.cost is not None
        items.append(
            DomainOrderItem(
                order_id=order.id,
                workspace_id=workspace_id,
                name=name,
                unicode_name=unicode_name,
                status=ItemStatus.REGISTERING,
                premium=answer.premium,
                cost=answer.cost,
                price=with_markup(settings, answer.cost),
                register_attempts=0,
                refunded=False,
            )
        )
    session.add_all(items)
    order.total = sum(item.price for item in items)
    try:
        await session.flush()
    except IntegrityError:
        # Another request claimed one of the names since _refuse_owned looked.
        raise Conflict(
            f"Being bought by another request: one of {', '.join(names)}; retry",
            domains=names,
        ) from None
    if not billing_on or not await charge_order(session, settings, order, items):
        if billing_on:
            order.status = OrderStatus.PENDING_PAYMENT
            for item in items:
                item.status = ItemStatus.PENDING_PAYMENT
            await session.flush()
        else:
            _start_after_commit(session, order.id)
    return order, True


async def _refuse_owned(session: AsyncSession, names: Sequence[str]) -> None:
    """409 naming the names Mailfleet holds already (a domain of any workspace) or
    is buying in an order not failed."""
    connected = set(await session.scalars(select(Domain.name).where(Domain.name.in_(names))))
    buying = set(
        await session.scalars(
            select(DomainOrderItem.name).where(
                DomainOrderItem.name.in_(names), DomainOrderItem.status != ItemStatus.FAILED
            )
        )
    )
    taken = sorted(connected | buying)
    if taken:
        raise Conflict(f"Already owned or being bought: {', '.join(taken)}", domains=taken)


async def _purchase_quotes(
    registrar: Registrar, wanted: Sequence[tuple[str, str]], data: PurchaseIn
) -> dict[str, Availability]:
    supported = await _supported(registrar)
    for index, (name, _) in enumerate(wanted):
        if _tld_of(name) not in supported:
            raise ValidationFailed.for_field(
                f"domains.{index}",
                f"{registrar.name} does not sell .{_tld_of(name)} names ({name})",
            )
    names = [name for name, _ in wanted]
    try:
        quotes = await quote(registrar, names, data.years)
    except UnsupportedTld as exc:
        raise ValidationFailed.for_field("domains", exc.message) from None
    except RegistrarRateLimited as exc:
        raise RateLimited(
            f"{exc.message}; retry in {int(exc.retry_after) + 1} s",
            retryAfter=int(exc.retry_after) + 1,
        ) from None
    except RegistrarError as exc:
        raise RegistrarFailed(exc.message) from None
    unavailable = [name for name in names if not quotes[name].available]
    if unavailable:
        raise Conflict(
            f"Not available for registration: {', '.join(unavailable)}", domains=unavailable
        )
    for index, name in enumerate(names):
        answer = quotes[name]
        if answer.premium and not data.allow_premium:
            raise ValidationFailed.for_field(
                f"domains.{index}",
                f"{name} is a premium name; set allowPremium to buy it at its price",
            )
        if answer.cost is None:
            raise ValidationFailed.for_field(
                f"domains.{index}", f"{registrar.name} gave no price for {name}"
            )
    return quotes


async def charge_order(
    session: AsyncSession, settings: Settings, order: DomainOrder, items: Sequence[DomainOrderItem]
) -> bool:
    """Take the order's total from the wallet in one movement and start its workflow
    after the commit. False (nothing taken) when the wallet cannot cover it."""
    account = await ledger.lock_account(session, order.workspace_id, settings.billing_currency)
    if order.charged:
        return True
    available = await ledger.balance(session, order.workspace_id)
    if available < order.total:
        return False
    invoice = await invoices.issue_invoice(
        session,
        order.workspace_id,
        kind="domains",
        currency=order.currency,
        lines=[
            InvoiceLine(
                description=f"Domain registration: {item.unicode_name} ({order.years} year"
                f"{'s' if order.years > 1 else ''})",
                quantity=1,
                unit_amount=item.price,
            )
            for item in items
        ],
    )
    await ledger.post_entry(
        session,
        account,
        amount=-order.total,
        kind="charge",
        description=f"Domain order {order.id} (invoice {invoice.number})",
        key=f"domain-order:{order.id}",
        invoice_id=invoice.id,
        user_id=order.created_by_user_id,
    )
    order.charged = True
    order.status = OrderStatus.PROCESSING
    for item in items:
        if item.status == ItemStatus.PENDING_PAYMENT:
            item.status = ItemStatus.REGISTERING
    await session.flush()
    _start_after_commit(session, order.id)
    return True


def _start_after_commit(session: AsyncSession, order_id: str) -> None:
    # A crash before the enqueue is covered by the sweeper (requeue_unfinished_orders).
    ledger.enqueue_after_commit(session, lambda: enqueue(order_id))


async def charge_waiting_orders(
    session: AsyncSession, settings: Settings, workspace_id: str
) -> int:
    """Money came in: charge the workspace's orders waiting for payment, oldest
    first, while the wallet covers them. Billing calls this after every credit."""
    waiting = list(
        await session.scalars(
            select(DomainOrder)
            .where(
                DomainOrder.workspace_id == workspace_id,
                DomainOrder.status == OrderStatus.PENDING_PAYMENT,
            )
            .order_by(DomainOrder.created_at, DomainOrder.id)
        )
    )
    charged = 0
    for order in waiting:
        if await charge_order(session, settings, order, await order_items(session, order.id)):
            charged += 1
    return charged


async def order_items(session: AsyncSession, order_id: str) -> list[DomainOrderItem]:
    return list(
        await session.scalars(
            select(DomainOrderItem)
            .where(DomainOrderItem.order_id == order_id)
            .order_by(DomainOrderItem.created_at, DomainOrderItem.id)
        )
    )


async def get_order(session: AsyncSession, workspace_id: str, order_id: str) -> DomainOrder:
    return await OrderRepository(session).get(workspace_id, order_id)


async def list_orders(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[DomainOrder], int]:
    repository = OrderRepository(session)
    return await repository.newest_first(repository.owned_by(workspace_id), page)


async def items_of(
    session: AsyncSession, order_ids: Sequence[str]
) -> dict[str, list[DomainOrderItem]]:
    result: dict[str, list[DomainOrderItem]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return result
    rows = await session.scalars(
        select(DomainOrderItem)
        .where(DomainOrderItem.order_id.in_(list(order_ids)))
        .order_by(DomainOrderItem.created_at, DomainOrderItem.id)
    )
    for row in rows:
        result[row.order_id].append(row)
    return result


# ------------------------------------------------------------------ payment link


async def payment_link(
    session: AsyncSession,
    settings: Settings,
    provider: PaymentProvider,
    workspace: Workspace,
    user: User,
    order_id: str,
    success_url: str | None,
    cancel_url: str | None,
) -> tuple[DomainOrder, Payment]:
    """A Checkout for what the wallet lacks to pay the order; the same one while it
    is still open. Its payment credits the wallet, which charges the order."""
    order = await get_order(session, workspace.id, order_id)
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise Conflict(
            f"Order {order.id} is not waiting for payment (it is {order.status})",
            orderStatus=order.status,
        )
    plans.require_billing(settings)
    if not provider.hosted_checkout:
        raise NotConfigured(
            "Payment links need a card payment provider (MAILFLEET_PAYMENT_PROVIDER=stripe)"
        )
    if order.payment_id:
        payment = await session.get(Payment, order.payment_id)
        if payment is not None and payment.status == PaymentStatus.PENDING:
            return order, payment
    missing = order.total - await ledger.balance(session, workspace.id)
    if missing <= 0:
        # Covered already (money came in since): charge it now instead.
        await charge_order(session, settings, order, await order_items(session, order.id))
        raise PaidFromWallet(
            f"Order {order.id} is paid from the wallet now", orderStatus=order.status
        )
    topup = TopUpIn.model_validate(
        {
            "amount": missing,
            "successUrl": success_url,
            "cancelUrl": cancel_url,
            "note": f"Domain order {order.id}",
        }
    )
    payment = await wallet.start_topup(session, settings, provider, workspace, user, topup)
    payment.reason = f"domain-order:{order.id}"
    order.payment_id = payment.id
    await session.flush()
    return order, payment


# ------------------------------------------------------------ workflow bookkeeping


def contact_of(order: DomainOrder) -> Contact | None:
    if not order.contact:
        return None
    data = ContactIn.model_validate(order.contact)
    return Contact(
        first_name=data.first_name,
        last_name=data.last_name,
        address1=data.address1,
        city=data.city,
        state_province=data.state_province,
        postal_code=data.postal_code,
        country=data.country.upper(),
        phone=data.phone,
        email=data.email,
        organization=data.organization,
        address2=data.address2,
    )


async def fail_item(
    session: AsyncSession,
    settings: Settings,
    order: DomainOrder,
    item: DomainOrderItem,
    reason: str,
    *,
    new_cost: int | None = None,
) -> None:
    """The name could not be bought: say why, and give its price back to the wallet
    in its own movement (once, whatever runs twice)."""
    item.status = ItemStatus.FAILED
    item.reason = reason[:500]
    if new_cost is not None:
        item.new_price = with_markup(settings, new_cost)
    if order.charged and not item.refunded:
        account = await ledger.lock_account(session, order.workspace_id, settings.billing_currency)
        invoice = await invoices.issue_invoice(
            session,
            order.workspace_id,
            kind="domains",
            currency=order.currency,
            lines=[
                InvoiceLine(
                    description=f"Refund: {item.unicode_name} was not registered",
                    quantity=1,
                    unit_amount=-item.price,
                )
            ],
        )
        await ledger.post_entry(
            session,
            account,
            amount=item.price,
            kind="refund",
            description=f"Domain {item.name} not registered (order {order.id})",
            key=f"domain-refund:{item.id}",
            invoice_id=invoice.id,
        )
        item.refunded = True
    await session.flush()
    from mailfleet.webhooks import events
    from mailfleet.webhooks import service as webhooks

    await webhooks.emit(
        session,
        order.workspace_id,
        events.DOMAIN_PURCHASE_FAILED,
        {
            "orderId": order.id,
            "domain": item.name,
            "reason": item.reason,
            "newPrice": item.new_price,
            "refunded": item.refunded,
            "amount": item.price,
            "currency": order.currency,
        },
    )


async def record_registered(
    session: AsyncSession, order: DomainOrder, item: DomainOrderItem, order_ref: str | None
) -> None:
    item.status = ItemStatus.REGISTERED
    item.registrar_order_ref = order_ref or item.registrar_order_ref
    item.registered_at = utcnow()
    item.reason = None
    await session.flush()
    from mailfleet.webhooks import events
    from mailfleet.webhooks import service as webhooks

    await webhooks.emit(
        session,
        order.workspace_id,
        events.DOMAIN_PURCHASED,
        {
            "orderId": order.id,
            "domain": item.name,
            "registrar": order.registrar,
            "years": order.years,
            "amount": item.price,
            "currency": order.currency,
        },
    )


async def finish_order(session: AsyncSession, order: DomainOrder) -> str:
    open_items = await session.scalar(
        select(func.count())
        .select_from(DomainOrderItem)
        .where(
            DomainOrderItem.order_id == order.id,
            DomainOrderItem.status.in_([ItemStatus.REGISTERING, ItemStatus.PENDING_PAYMENT]),
        )
    )
    if not open_items and order.status == OrderStatus.PROCESSING:
        order.status = OrderStatus.COMPLETED
        order.completed_at = utcnow()
        await session.flush()
    return order.status


async def unfinished_orders(session: AsyncSession) -> list[str]:
    return list(
        await session.scalars(
            select(DomainOrder.id).where(DomainOrder.status == OrderStatus.PROCESSING)
        )
    )


async def enqueue(order_id: str) -> None:
    from mailfleet import jobs

    await jobs.enqueue_named(
        PURCHASE_QUEUE, PURCHASE_WORKFLOW, order_id, workflow_id=workflow_id(order_id)
    )
