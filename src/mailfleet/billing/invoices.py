"""Invoices (one per charge and per top-up), their printable HTML, billing details."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import ledger, taxids
from mailfleet.billing.money import format_amount
from mailfleet.billing.repository import InvoiceRepository
from mailfleet.billing.schemas import BillingDetailsIn
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import ValidationFailed
from mailfleet.kit.pagination import Page
from mailfleet.models.billing import BillingDetails, Invoice


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    unit_amount: int

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_amount

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "quantity": self.quantity,
            "unitAmount": self.unit_amount,
            "amount": self.amount,
        }


async def issue_invoice(
    session: AsyncSession,
    workspace_id: str,
    *,
    kind: str,
    currency: str,
    lines: list[InvoiceLine],
    subscription_id: str | None = None,
    payment_id: str | None = None,
    period: tuple[datetime, datetime] | None = None,
) -> Invoice:
    """A paid invoice: every charge is taken from the wallet when it is issued, and
    a top-up is invoiced once the money arrived. A negative total is a credit note
    (unused time returned to the wallet). Totals carry no tax computation."""
    now = utcnow()
    number = await ledger.next_counter(session, "invoice")
    subtotal = sum(line.amount for line in lines)
    invoice = Invoice(
        workspace_id=workspace_id,
        number=f"MF-{now:%Y}-{number:06d}",
        kind=kind,
        status="paid",
        currency=currency,
        lines=[line.to_dict() for line in lines],
        subtotal=subtotal,
        total=subtotal,
        bill_to=await details_snapshot(session, workspace_id),
        subscription_id=subscription_id,
        payment_id=payment_id,
        period_start=period[0] if period else None,
        period_end=period[1] if period else None,
        issued_at=now,
        paid_at=now,
    )
    session.add(invoice)
    await session.flush()
    await ledger.emit_event(
        session,
        workspace_id,
        "invoice.created",
        {
            "invoiceId": invoice.id,
            "number": invoice.number,
            "kind": kind,
            "status": invoice.status,
            "total": invoice.total,
            "currency": currency,
        },
    )
    return invoice


async def list_invoices(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[Invoice], int]:
    repository = InvoiceRepository(session)
    return await repository.paginate(
        repository.owned_by(workspace_id), page, Invoice.issued_at.desc(), Invoice.id.desc()
    )


async def get_invoice(session: AsyncSession, workspace_id: str, invoice_id: str) -> Invoice:
    return await InvoiceRepository(session).get(workspace_id, invoice_id)


# Billing details


async def get_details(session: AsyncSession, workspace_id: str) -> BillingDetails | None:
    return await session.get(BillingDetails, workspace_id)


async def save_details(
    session: AsyncSession, workspace_id: str, data: BillingDetailsIn
) -> BillingDetails:
    try:
        country = taxids.normalize_country(data.country)
    except taxids.TaxIdError as exc:
        raise ValidationFailed.for_field("country", str(exc)) from None
    tax_id = None
    if data.tax_id:
        try:
            tax_id = taxids.normalize_tax_id(country, data.tax_id)
        except taxids.TaxIdError as exc:
            raise ValidationFailed.for_field("taxId", str(exc)) from None
    details = await session.get(BillingDetails, workspace_id)
    if details is None:
        details = BillingDetails(workspace_id=workspace_id)
        session.add(details)
    details.company_name = data.company_name
    details.address_line1 = data.address_line1
    details.address_line2 = data.address_line2
    details.city = data.city
    details.state = data.state
    details.postal_code = data.postal_code
    details.country = country
    details.tax_id = tax_id
    details.billing_email = data.billing_email
    await session.flush()
    return details


def details_dict(details: BillingDetails) -> dict[str, Any]:
    return {
        "companyName": details.company_name,
        "addressLine1": details.address_line1,
        "addressLine2": details.address_line2,
        "city": details.city,
        "state": details.state,
        "postalCode": details.postal_code,
        "country": details.country,
        "taxId": details.tax_id,
        "billingEmail": details.billing_email,
    }


async def details_snapshot(session: AsyncSession, workspace_id: str) -> dict[str, Any] | None:
    details = await get_details(session, workspace_id)
    return details_dict(details) if details else None


# Printable HTML

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111; max-width: 760px; margin: 2em auto; }
h1 { font-size: 22px; margin: 0 0 .2em; }
table { width: 100%; border-collapse: collapse; margin: 1.5em 0; }
th, td { padding: .45em .3em; border-bottom: 1px solid #ddd; text-align: left; }
td.num, th.num { text-align: right; white-space: nowrap; }
tfoot td { font-weight: 600; border-bottom: none; }
.meta { display: flex; justify-content: space-between; gap: 2em; }
.muted { color: #555; }
@media print { body { margin: 0; } }
"""


def _date(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else ""


def render_invoice_html(invoice: Invoice, workspace_name: str) -> str:
    """A self-contained page to print or save as PDF. Every stored value is escaped."""
    e = html.escape
    currency = invoice.currency
    bill_to = invoice.bill_to or {}
    address = [
        bill_to.get("companyName") or workspace_name,
        bill_to.get("addressLine1"),
        bill_to.get("addressLine2"),
        " ".join(part for part in (bill_to.get("postalCode"), bill_to.get("city")) if part),
        bill_to.get("state"),
        bill_to.get("country"),
        f"Tax id: {bill_to['taxId']}" if bill_to.get("taxId") else None,
        bill_to.get("billingEmail"),
    ]
    rows = "\n".join(
        f"<tr><td>{e(str(line['description']))}</td><td class=num>{int(line['quantity'])}</td>"
        f"<td class=num>{e(format_amount(int(line['unitAmount']), currency))}</td>"
        f"<td class=num>{e(format_amount(int(line['amount']), currency))}</td></tr>"
        for line in invoice.lines
    )
    period = (
        f"<p class=muted>Service period: {_date(invoice.period_start)} to "
        f"{_date(invoice.period_end)}</p>"
        if invoice.period_start
        else ""
    )
    title = "Credit note" if invoice.total < 0 else "Invoice"
    subtotal = format_amount(invoice.subtotal, currency)
    total = format_amount(invoice.total, currency)
    paid_on = _date(invoice.paid_at)
    if invoice.kind == "topup":
        paid = f"Paid on {paid_on}; credited to the wallet."
    elif invoice.total < 0:
        paid = f"Credited to the wallet on {paid_on}."
    else:
        paid = f"Paid from the wallet on {paid_on}."
    bill_to_html = "<br>".join(e(str(part)) for part in address if part)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title} {e(invoice.number)}</title><style>{_STYLE}</style></head>
<body>
<div class=meta>
  <div><h1>{title} {e(invoice.number)}</h1>
    <p class=muted>Issued {_date(invoice.issued_at)} &middot; Status: {e(invoice.status)}</p>
    {period}</div>
  <div><strong>Bill to</strong><br>{bill_to_html}</div>
</div>
<table>
<thead><tr><th>Description</th><th class=num>Qty</th><th class=num>Unit price</th>
<th class=num>Amount</th></tr></thead>
<tbody>
{rows}
</tbody>
<tfoot>
<tr><td colspan=3>Subtotal</td><td class=num>{e(subtotal)}</td></tr>
<tr><td colspan=3>Total</td><td class=num>{e(total)}</td></tr>
</tfoot>
</table>
<p class=muted>{e(paid)}</p>
</body></html>
"""
