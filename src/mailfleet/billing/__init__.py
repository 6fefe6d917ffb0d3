"""Billing: plans and limits, subscriptions, the wallet ledger, payments, invoices."""
