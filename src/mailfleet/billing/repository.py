"""Plan, subscription, invoice, payment and wallet entry look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import Invoice, Payment, Plan, Subscription, WalletEntry


class PlanRepository(Repository[Plan], model=Plan, noun="Plan"): ...


class SubscriptionRepository(Repository[Subscription], model=Subscription, noun="Subscription"): ...


class InvoiceRepository(Repository[Invoice], model=Invoice, noun="Invoice"): ...


class PaymentRepository(Repository[Payment], model=Payment, noun="Payment"): ...


class WalletEntryRepository(Repository[WalletEntry], model=WalletEntry, noun="Wallet entry"): ...
