"""Stripe's API faked at the HTTP boundary: a loopback server the `stripe` library
talks to (its api_base pointed here), answering from Stripe's public API
reference, and recording every request's method, path, headers and form fields.

    with FakeStripe() as stripe_api:
        settings.stripe_api_base = stripe_api.url
        stripe_api.decline_next_charge = True   # the next PaymentIntent is a card_error
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tests.servers.http_fake import FakeHandler, LoopbackHttpFake


@dataclass(frozen=True)
class StripeRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


class FakeStripe(LoopbackHttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[StripeRequest] = []
        self.decline_next_charge = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def posts(self, path: str) -> list[StripeRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == path]

    def _handle(self, handler: FakeHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        request = StripeRequest(
            method=handler.command,
            path=urllib.parse.urlsplit(handler.path).path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            form=dict(urllib.parse.parse_qsl(raw, keep_blank_values=True)),
        )
        with self._lock:
            self.requests.append(request)
            number = next(self._ids)
            decline = request.path == "/v1/payment_intents" and self.decline_next_charge
            if decline:
                self.decline_next_charge = False
        status, body = self._answer(request, number, decline)
        self._send(
            handler,
            status,
            json.dumps(body).encode(),
            "application/json",
            {"request-id": f"req_test_{number}"},
        )

    def _answer(
        self, request: StripeRequest, number: int, decline: bool
    ) -> tuple[int, dict[str, Any]]:
        form = request.form
        if request.path == "/v1/customers":
            return 200, {
                "id": f"cus_test_{number}",
                "object": "customer",
                "email": form.get("email"),
                "name": form.get("name"),
                "metadata": {"workspace_id": form.get("metadata[workspace_id]")},
            }
        if request.path == "/v1/checkout/sessions":
            session_id = f"cs_test_{number}"
            return 200, {
                "id": session_id,
                "object": "checkout.session",
                "mode": form.get("mode"),
                "customer": form.get("customer"),
                "client_reference_id": form.get("client_reference_id"),
                "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                "currency": form.get("line_items[0][price_data][currency]"),
                "payment_status": "unpaid",
                "status": "open",
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            }
        if request.path == "/v1/payment_intents":
            if decline:
                return 402, {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Your card has insufficient funds.",
                    }
                }
            return 200, {
                "id": f"pi_test_{number}",
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "amount_received": int(form["amount"]),
                "currency": form.get("currency"),
                "customer": form.get("customer"),
                "payment_method": form.get("payment_method"),
                "status": "succeeded",
                "metadata": {
                    "payment_id": form.get("metadata[payment_id]"),
                    "workspace_id": form.get("metadata[workspace_id]"),
                },
            }
        return 404, {"error": {"type": "invalid_request_error", "message": "Unrecognized URL"}}


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, as Stripe computes it."""
    moment = int(time.time()) if timestamp is None else timestamp
    signed = f"{moment}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def event(event_id: str, event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": event_type,
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()
