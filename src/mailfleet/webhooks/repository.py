"""Webhook endpoint and delivery look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import WebhookDelivery, WebhookEndpoint


class EndpointRepository(Repository[WebhookEndpoint], model=WebhookEndpoint, noun="Webhook"): ...


class DeliveryRepository(
    Repository[WebhookDelivery], model=WebhookDelivery, noun="Delivery", owner="endpoint_id"
): ...
