"""Plans, and whether billing is on at all.

With MAILFLEET_BILLING=off every workspace holds the built-in unlimited
"self-hosted" plan (never stored) and nothing charges anyone.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing.ledger import BillingDisabled
from mailfleet.billing.repository import PlanRepository
from mailfleet.billing.schemas import PlanCreate, PlanUpdate
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict, NotFound, ValidationFailed
from mailfleet.kit.pagination import Page
from mailfleet.models.billing import Plan

SELF_HOSTED_PLAN_ID = "self-hosted"


def resolved_settings(settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    from mailfleet.runtime import runtime

    return runtime().settings


def billing_enabled(settings: Settings | None = None) -> bool:
    return resolved_settings(settings).billing == "on"


def require_billing(settings: Settings) -> None:
    if settings.billing != "on":
        raise BillingDisabled(
            "Billing is off (MAILFLEET_BILLING=off): every workspace already has the "
            "unlimited self-hosted plan"
        )


def self_hosted_plan(settings: Settings) -> Plan:
    """The built-in plan every workspace holds while billing is off (never stored)."""
    return Plan(
        id=SELF_HOSTED_PLAN_ID,
        name="self-hosted",
        description="Unlimited mailboxes and domains; nothing is charged (MAILFLEET_BILLING=off)",
        price_per_mailbox=0,
        currency=settings.billing_currency,
        period="month",
        max_mailboxes=None,
        max_domains=None,
        active=True,
    )


async def list_plans(
    session: AsyncSession, page: Page, *, include_inactive: bool
) -> tuple[list[Plan], int]:
    query = PlanRepository.select()
    if not include_inactive:
        query = query.where(Plan.active.is_(True))
    return await PlanRepository(session).paginate(query, page, Plan.price_per_mailbox, Plan.name)


async def get_plan(session: AsyncSession, plan_id: str) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f"Plan {plan_id} not found")
    return plan


def _plan_currency(settings: Settings, currency: str | None) -> str:
    chosen = (currency or settings.billing_currency).upper()
    if chosen != settings.billing_currency:
        # One wallet per workspace, in one currency: a plan priced in another could
        # never be paid from it.
        raise ValidationFailed.for_field(
            "currency",
            f"Plans are priced in the wallet currency {settings.billing_currency} "
            "(MAILFLEET_BILLING_CURRENCY)",
        )
    return chosen


async def _flush_unique_name(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"A plan named {name!r} already exists") from exc


async def create_plan(session: AsyncSession, settings: Settings, data: PlanCreate) -> Plan:
    if await session.scalar(select(Plan.id).where(Plan.name == data.name)):
        raise Conflict(f"A plan named {data.name!r} already exists")
    plan = Plan(
        name=data.name,
        description=data.description,
        price_per_mailbox=data.price_per_mailbox,
        currency=_plan_currency(settings, data.currency),
        period=data.period,
        max_mailboxes=data.max_mailboxes,
        max_domains=data.max_domains,
        active=data.active,
    )
    session.add(plan)
    await _flush_unique_name(session, data.name)
    return plan


async def update_plan(session: AsyncSession, plan: Plan, data: PlanUpdate) -> Plan:
    given = data.model_fields_set
    if data.name is not None and data.name != plan.name:
        if await session.scalar(select(Plan.id).where(Plan.name == data.name)):
            raise Conflict(f"A plan named {data.name!r} already exists")
        plan.name = data.name
    if data.description is not None:
        plan.description = data.description
    if data.price_per_mailbox is not None:
        plan.price_per_mailbox = data.price_per_mailbox
    if data.period is not None:
        plan.period = data.period
    if "max_mailboxes" in given:
        plan.max_mailboxes = data.max_mailboxes
    if "max_domains" in given:
        plan.max_domains = data.max_domains
    if data.active is not None:
        plan.active = data.active
    plan.updated_at = utcnow()
    await _flush_unique_name(session, plan.name)
    return plan
