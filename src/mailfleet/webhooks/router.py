"""Webhook endpoints of a workspace, their test events and their deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from mailfleet.deps import KeyringDep, SessionDep, SettingsDep, WorkspaceDep
from mailfleet.kit.envelope import ERROR_RESPONSES, Envelope, ListEnvelope, ok
from mailfleet.kit.pagination import PageDep
from mailfleet.models import WebhookDelivery, WebhookEndpoint
from mailfleet.webhooks import events, service
from mailfleet.webhooks.schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    EventTypeOut,
    WebhookCreate,
    WebhookCreatedOut,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


def webhook_out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempt_count=delivery.attempt_count,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        finished_at=delivery.finished_at,
        retry_of=delivery.retry_of_id,
        attempts=[DeliveryAttemptOut.model_validate(attempt) for attempt in delivery.attempts],
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
    )


@router.get("", response_model=ListEnvelope[WebhookOut])
async def list_webhooks(ctx: WorkspaceDep, session: SessionDep, page: PageDep) -> Any:
    endpoints, total = await service.list_endpoints(session, ctx.workspace_id, page)
    return {
        "success": True,
        "data": [webhook_out(endpoint) for endpoint in endpoints],
        "pagination": page.describe(total),
    }


@router.post("", response_model=Envelope[WebhookCreatedOut], status_code=status.HTTP_201_CREATED)
async def register_webhook(
    body: WebhookCreate,
    ctx: WorkspaceDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Any:
    """Register an endpoint. The signing secret is in this answer and never again."""
    endpoint, secret = await service.create_endpoint(
        session, keyring, settings, ctx.workspace_id, body
    )
    created = WebhookCreatedOut(**webhook_out(endpoint).model_dump(), secret=secret)
    return ok(created, "Webhook registered; store the signing secret now: it is not shown again")


@router.get("/event-types", response_model=Envelope[list[EventTypeOut]])
async def list_event_types(ctx: WorkspaceDep) -> Any:
    return ok(
        [
            EventTypeOut(
                name=event.name, description=event.description, data_fields=list(event.data_fields)
            )
            for event in events.CATALOGUE
        ]
    )


@router.get("/{webhook_id}", response_model=Envelope[WebhookOut])
async def get_webhook(webhook_id: str, ctx: WorkspaceDep, session: SessionDep) -> Any:
    return ok(webhook_out(await service.get_endpoint(session, ctx.workspace_id, webhook_id)))


@router.put("/{webhook_id}", response_model=Envelope[WebhookOut])
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    ctx: WorkspaceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    endpoint = await service.update_endpoint(session, settings, endpoint, body)
    return ok(webhook_out(endpoint), "Webhook updated")


@router.delete("/{webhook_id}", response_model=Envelope[None])
async def delete_webhook(webhook_id: str, ctx: WorkspaceDep, session: SessionDep) -> Any:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    await service.delete_endpoint(session, endpoint)
    return ok(None, "Webhook deleted")


@router.post(
    "/{webhook_id}/test",
    response_model=Envelope[DeliveryOut],
    status_code=status.HTTP_202_ACCEPTED,
)
async def send_test_event(webhook_id: str, ctx: WorkspaceDep, session: SessionDep) -> Any:
    """Send a webhook.test event to this endpoint; follow it in its deliveries."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    delivery = await service.send_test_event(session, endpoint)
    return ok(delivery_out(delivery), "Test event queued")


@router.get("/{webhook_id}/deliveries", response_model=ListEnvelope[DeliveryOut])
async def list_deliveries(
    webhook_id: str,
    ctx: WorkspaceDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[
        str | None, Query(description="pending, succeeded, failed or cancelled")
    ] = None,
) -> Any:
    """Deliveries, newest first, each with its attempts."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    deliveries, total = await service.list_deliveries(session, endpoint, page, status=status)
    return {
        "success": True,
        "data": [delivery_out(delivery) for delivery in deliveries],
        "pagination": page.describe(total),
    }


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=Envelope[DeliveryOut])
async def get_delivery(
    webhook_id: str, delivery_id: str, ctx: WorkspaceDep, session: SessionDep
) -> Any:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    return ok(delivery_out(await service.get_delivery(session, endpoint, delivery_id)))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    response_model=Envelope[DeliveryOut],
    status_code=status.HTTP_202_ACCEPTED,
)
async def retry_delivery(
    webhook_id: str, delivery_id: str, ctx: WorkspaceDep, session: SessionDep
) -> Any:
    """Send a finished delivery's event again, as a new delivery (answered here)."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    delivery = await service.get_delivery(session, endpoint, delivery_id)
    retry = await service.retry_delivery(session, endpoint, delivery)
    return ok(delivery_out(retry), "Delivery queued again")
