"""Webhook endpoints of a workspace, their test events and their deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from mailfleet.deps import (
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
)
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
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

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=WORKSPACE_ERRORS)


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


@router.get("", operation_id="webhooks:list")
async def list_webhooks(
    ctx: WorkspaceReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[WebhookOut]:
    endpoints, total = await service.list_endpoints(session, ctx.workspace_id, page)
    return ListEnvelope(
        data=[webhook_out(endpoint) for endpoint in endpoints], pagination=page.describe(total)
    )


@router.post("", operation_id="webhooks:create", status_code=status.HTTP_201_CREATED)
async def register_webhook(
    body: WebhookCreate,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Envelope[WebhookCreatedOut]:
    """Register an endpoint. The signing secret is in this answer and never again."""
    endpoint, secret = await service.create_endpoint(
        session, keyring, settings, ctx.workspace_id, body
    )
    created = WebhookCreatedOut(**webhook_out(endpoint).model_dump(), secret=secret)
    return ok(created, "Webhook registered; store the signing secret now: it is not shown again")


@router.get("/event-types", operation_id="webhooks:list_event_types")
async def list_event_types(ctx: WorkspaceReadDep) -> Envelope[list[EventTypeOut]]:
    return ok(
        [
            EventTypeOut(
                name=event.name, description=event.description, data_fields=list(event.data_fields)
            )
            for event in events.CATALOGUE
        ]
    )


@router.get("/{webhook_id}", operation_id="webhooks:get")
async def get_webhook(
    webhook_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[WebhookOut]:
    return ok(webhook_out(await service.get_endpoint(session, ctx.workspace_id, webhook_id)))


@router.put("/{webhook_id}", operation_id="webhooks:update")
async def update_webhook(
    webhook_id: str,
    body: WebhookUpdate,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Envelope[WebhookOut]:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    endpoint = await service.update_endpoint(session, settings, endpoint, body)
    return ok(webhook_out(endpoint), "Webhook updated")


@router.delete("/{webhook_id}", operation_id="webhooks:delete")
async def delete_webhook(
    webhook_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[None]:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    await service.delete_endpoint(session, endpoint)
    return ok(None, "Webhook deleted")


@router.post(
    "/{webhook_id}/test",
    operation_id="webhooks:send_test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(409),
)
async def send_test_event(
    webhook_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[DeliveryOut]:
    """Send a webhook.test event to this endpoint; follow it in its deliveries."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    delivery = await service.send_test_event(session, endpoint)
    return ok(delivery_out(delivery), "Test event queued")


@router.get("/{webhook_id}/deliveries", operation_id="webhooks.deliveries:list")
async def list_deliveries(
    webhook_id: str,
    ctx: WorkspaceReadDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[
        str | None, Query(description="pending, succeeded, failed or cancelled")
    ] = None,
) -> ListEnvelope[DeliveryOut]:
    """Deliveries, newest first, each with its attempts."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    deliveries, total = await service.list_deliveries(session, endpoint, page, status=status)
    return ListEnvelope(
        data=[delivery_out(delivery) for delivery in deliveries], pagination=page.describe(total)
    )


@router.get("/{webhook_id}/deliveries/{delivery_id}", operation_id="webhooks.deliveries:get")
async def get_delivery(
    webhook_id: str, delivery_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[DeliveryOut]:
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    return ok(delivery_out(await service.get_delivery(session, endpoint, delivery_id)))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry",
    operation_id="webhooks.deliveries:retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(409),
)
async def retry_delivery(
    webhook_id: str, delivery_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[DeliveryOut]:
    """Send a finished delivery's event again, as a new delivery (answered here)."""
    endpoint = await service.get_endpoint(session, ctx.workspace_id, webhook_id)
    delivery = await service.get_delivery(session, endpoint, delivery_id)
    retry = await service.retry_delivery(session, endpoint, delivery)
    return ok(delivery_out(retry), "Delivery queued again")
