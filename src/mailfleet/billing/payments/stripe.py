"""Stripe, through the official `stripe` library and its asyncio httpx client.

Top-ups go through a Checkout Session that also saves the card for later
(`setup_future_usage=off_session`); auto-recharge charges that card with an
off-session PaymentIntent. Stripe's webhook settles both: `verify_webhook`
checks its signature. Every create carries an idempotency key derived from our
own payment id, so a retried step never charges twice.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import stripe

from mailfleet.billing.payments.base import (
    ChargeOutcome,
    CheckoutRequest,
    CheckoutStarted,
    OffSessionCharge,
    PaymentProviderError,
)
from mailfleet.config import Settings

log = logging.getLogger(__name__)

TOPUP_PRODUCT_NAME = "Mailfleet wallet top-up"


class StripeProvider:
    name = "stripe"
    hosted_checkout = True

    # One client per key and base URL: its httpx pool is reused across calls.
    _instances: dict[tuple[str, str | None], StripeProvider] = {}  # noqa: RUF012

    def __init__(self, secret_key: str, webhook_secret: str | None, api_base: str | None) -> None:
        self.webhook_secret = webhook_secret
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=30),
            max_network_retries=2,
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> StripeProvider:
        if not settings.stripe_secret_key:
            raise PaymentProviderError("Stripe is not configured (MAILFLEET_STRIPE_SECRET_KEY)")
        key = (settings.stripe_secret_key, settings.stripe_api_base)
        instance = cls._instances.get(key)
        if instance is None or instance.webhook_secret != settings.stripe_webhook_secret:
            instance = cls(
                settings.stripe_secret_key, settings.stripe_webhook_secret, settings.stripe_api_base
            )
            cls._instances[key] = instance
        return instance

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        metadata = {"payment_id": request.payment_id, "workspace_id": request.workspace_id}
        try:
            customer_id = request.customer_id
            if customer_id is None:
                customer = await self.client.v1.customers.create_async(
                    params={
                        "email": request.customer_email,
                        "name": request.customer_name,
                        "metadata": {"workspace_id": request.workspace_id},
                    },
                    # A retry within Stripe's 24 hours gets the same customer back.
                    options={"idempotency_key": f"mailfleet-customer-{request.workspace_id}"},
                )
                customer_id = customer.id
            session = await self.client.v1.checkout.sessions.create_async(
                params={
                    "mode": "payment",
                    "customer": customer_id,
                    "client_reference_id": request.payment_id,
                    "line_items": [
                        {
                            "price_data": {
                                "currency": request.currency.lower(),
                                "unit_amount": request.amount,
                                "product_data": {"name": TOPUP_PRODUCT_NAME},
                            },
                            "quantity": 1,
                        }
                    ],
                    # Saves the card on the customer so auto-recharge can use it.
                    "payment_intent_data": {
                        "setup_future_usage": "off_session",
                        "metadata": metadata,
                    },
                    "metadata": metadata,
                    "success_url": request.success_url,
                    "cancel_url": request.cancel_url,
                },
                options={"idempotency_key": f"mailfleet-checkout-{request.payment_id}"},
            )
        except stripe.StripeError as exc:
            raise PaymentProviderError(_describe(exc, "start a checkout")) from None
        if not session.url:
            raise PaymentProviderError("Stripe returned a checkout session without a URL")
        return CheckoutStarted(provider_ref=session.id, url=session.url, customer_id=customer_id)

    async def charge_off_session(self, request: OffSessionCharge) -> ChargeOutcome:
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params={
                    "amount": request.amount,
                    "currency": request.currency.lower(),
                    "customer": request.customer_id,
                    "payment_method": request.payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "description": request.description,
                    "metadata": {
                        "payment_id": request.payment_id,
                        "workspace_id": request.workspace_id,
                    },
                },
                options={"idempotency_key": f"mailfleet-payment-{request.payment_id}"},
            )
        except stripe.CardError as exc:
            # A decline: the customer's bank said no. user_message is Stripe's
            # customer-facing wording ("Your card was declined.").
            return ChargeOutcome(
                status="failed",
                failure_message=(exc.user_message or "The card was declined")[:500],
            )
        except stripe.StripeError as exc:
            return ChargeOutcome(status="failed", failure_message=_describe(exc, "charge the card"))
        if intent.status == "succeeded":
            return ChargeOutcome(status="succeeded", provider_ref=intent.id)
        if intent.status == "processing":
            return ChargeOutcome(status="pending", provider_ref=intent.id)
        return ChargeOutcome(
            status="failed",
            provider_ref=intent.id,
            failure_message=f"The payment needs the customer ({intent.status})",
        )

    def verify_webhook(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, once its Stripe-Signature header checks out; ValueError if not."""
        if not self.webhook_secret:
            raise ValueError("Stripe webhooks are not configured (MAILFLEET_STRIPE_WEBHOOK_SECRET)")
        try:
            stripe.Webhook.construct_event(payload.decode("utf-8"), signature, self.webhook_secret)
        except stripe.SignatureVerificationError:
            raise ValueError("The Stripe-Signature header does not match this payload") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("The payload is not JSON") from None
        event: dict[str, Any] = json.loads(payload)
        return event


def _describe(exc: stripe.StripeError, action: str) -> str:
    # Stripe's own message may quote a (masked) API key; ours names only the code.
    log.warning(
        "stripe refused to %s: status=%s code=%s request_id=%s",
        action,
        exc.http_status,
        exc.code,
        exc.request_id,
    )
    code = f" ({exc.code})" if exc.code else ""
    return f"The payment provider could not {action}{code}"
