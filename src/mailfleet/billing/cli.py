"""`mailfleet billing ...`: the plans catalogue from the command line.

It works on the database directly (like `mailfleet admin bootstrap`), so it needs
the server's settings (MAILFLEET_DATABASE_URL or the data dir), not an API key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings, SettingsError, get_settings

T = TypeVar("T")

billing_app = typer.Typer(
    help="Billing: plans and prices (see MAILFLEET_BILLING).", no_args_is_help=True
)
plans_app = typer.Typer(help="The plans catalogue.", no_args_is_help=True)
billing_app.add_typer(plans_app, name="plans")

LIMIT_HELP = "A number, or 'unlimited'"


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.check_startup()
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    return settings


def _limit(value: str | None, option: str) -> int | None:
    if value is None or value.strip().lower() == "unlimited":
        return None
    try:
        number = int(value)
    except ValueError:
        raise typer.BadParameter(LIMIT_HELP, param_hint=option) from None
    return number


def _in_transaction(work: Callable[[Settings, AsyncSession], Awaitable[T]]) -> T:
    from mailfleet.db import Database
    from mailfleet.kit.errors import MailfleetError
    from mailfleet.migrate import upgrade_database

    settings = _settings()

    async def run() -> T:
        database = Database.from_settings(settings)
        try:
            await upgrade_database(database)
            async with database.transaction() as session:
                return await work(settings, session)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except MailfleetError as exc:
        details = exc.extra.get("details") or []
        fields = ", ".join(str(d.get("field")) for d in details if d.get("field"))
        typer.secho(
            f"error: {exc.message}" + (f" ({fields})" if fields else ""), fg="red", err=True
        )
        raise typer.Exit(1) from exc
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            typer.secho(f"error: {field}: {error['msg']}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _plan_dict(plan: Any) -> dict[str, Any]:
    from mailfleet.billing.router import plan_out

    data: dict[str, Any] = plan_out(plan).model_dump(mode="json", by_alias=True)
    return data


def _print_plans(plans: list[dict[str, Any]], as_json: bool) -> None:
    from mailfleet.billing.money import format_amount

    if as_json:
        typer.echo(json.dumps(plans if len(plans) != 1 else plans[0], indent=2))
        return
    for plan in plans:
        mailboxes = plan["maxMailboxes"] if plan["maxMailboxes"] is not None else "unlimited"
        domains = plan["maxDomains"] if plan["maxDomains"] is not None else "unlimited"
        state = "" if plan["active"] else "  (inactive)"
        price = format_amount(plan["pricePerMailbox"], plan["currency"])
        typer.echo(
            f"{plan['id']}  {plan['name']}: {price} per mailbox per {plan['period']}, "
            f"mailboxes {mailboxes}, domains {domains}{state}"
        )


AsJson = Annotated[bool, typer.Option("--json", help="Print JSON")]


@plans_app.command("list")
def plans_list(
    include_inactive: Annotated[
        bool, typer.Option("--all", help="Include plans no longer offered")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """List the plans."""
    from mailfleet.billing import plans
    from mailfleet.kit.pagination import MAX_LIMIT, Page

    async def work(settings: Settings, session: AsyncSession) -> list[dict[str, Any]]:
        offered, _ = await plans.list_plans(
            session, Page(limit=MAX_LIMIT, skip=0), include_inactive=include_inactive
        )
        return [_plan_dict(plan) for plan in offered]

    rows = _in_transaction(work)
    if not rows and not as_json:
        typer.echo("no plans yet; add one with `mailfleet billing plans create`")
        return
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_plans(rows, as_json)


@plans_app.command("create")
def plans_create(
    name: Annotated[str, typer.Option(help="The plan's name, unique")],
    price: Annotated[
        int, typer.Option(help="Price per mailbox per period, in minor units (cents)")
    ],
    period: Annotated[str, typer.Option(help="month or year")] = "month",
    max_mailboxes: Annotated[str | None, typer.Option(help=LIMIT_HELP)] = None,
    max_domains: Annotated[str | None, typer.Option(help=LIMIT_HELP)] = None,
    currency: Annotated[
        str | None, typer.Option(help="ISO 4217 [MAILFLEET_BILLING_CURRENCY]")
    ] = None,
    description: Annotated[str, typer.Option(help="Shown to customers")] = "",
    as_json: AsJson = False,
) -> None:
    """Add a plan."""
    from mailfleet.billing import plans
    from mailfleet.billing.schemas import PlanCreate

    async def work(settings: Settings, session: AsyncSession) -> dict[str, Any]:
        data = PlanCreate.model_validate(
            {
                "name": name,
                "description": description,
                "pricePerMailbox": price,
                "currency": currency,
                "period": period,
                "maxMailboxes": _limit(max_mailboxes, "--max-mailboxes"),
                "maxDomains": _limit(max_domains, "--max-domains"),
            }
        )
        return _plan_dict(await plans.create_plan(session, settings, data))

    _print_plans([_in_transaction(work)], as_json)


@plans_app.command("update")
def plans_update(
    plan_id: Annotated[str, typer.Argument(help="The plan's id")],
    name: Annotated[str | None, typer.Option(help="A new name")] = None,
    price: Annotated[
        int | None, typer.Option(help="New price per mailbox (minor units), from next renewal")
    ] = None,
    period: Annotated[str | None, typer.Option(help="month or year")] = None,
    max_mailboxes: Annotated[str | None, typer.Option(help=LIMIT_HELP)] = None,
    max_domains: Annotated[str | None, typer.Option(help=LIMIT_HELP)] = None,
    description: Annotated[str | None, typer.Option(help="Shown to customers")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Offer it to new subscribers")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Change a plan; options left out keep their value."""
    from mailfleet.billing import plans
    from mailfleet.billing.schemas import PlanUpdate

    values: dict[str, Any] = {
        "name": name,
        "description": description,
        "pricePerMailbox": price,
        "period": period,
        "active": active,
    }
    changes = {key: value for key, value in values.items() if value is not None}
    if max_mailboxes is not None:
        changes["maxMailboxes"] = _limit(max_mailboxes, "--max-mailboxes")
    if max_domains is not None:
        changes["maxDomains"] = _limit(max_domains, "--max-domains")

    async def work(settings: Settings, session: AsyncSession) -> dict[str, Any]:
        data = PlanUpdate.model_validate(changes)
        plan = await plans.get_plan(session, plan_id)
        return _plan_dict(await plans.update_plan(session, plan, data))

    _print_plans([_in_transaction(work)], as_json)
