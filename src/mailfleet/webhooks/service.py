"""Webhook endpoints, the event outbox, and delivery bookkeeping.

Any business area announces an event with `emit(session, workspace_id, type, data)`
inside its own transaction: the event and one delivery per subscribed endpoint
are written with the caller's rows, so they commit (or roll back) together.
After the commit each delivery is enqueued as a durable workflow; a crash
between commit and enqueue is covered by `workflows.requeue_pending_deliveries`.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.db import after_commit
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Conflict, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.netguard import NetguardError
from mailfleet.kit.pagination import Page
from mailfleet.models import (
    DELIVERY_STATUSES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
    WebhookEvent,
)
from mailfleet.webhooks import events
from mailfleet.webhooks.repository import DeliveryRepository, EndpointRepository
from mailfleet.webhooks.schemas import WebhookCreate, WebhookUpdate
from mailfleet.webhooks.sender import AttemptResult, check_url

log = logging.getLogger(__name__)

DELIVERY_QUEUE = "webhook_delivery"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
# An endpoint is disabled when this many deliveries in a row failed every
# attempt, or when it has failed without a single success for this long.
DISABLE_AFTER_FAILED_DELIVERIES = 3
DISABLE_AFTER_FAILING_FOR = timedelta(hours=24)
# Keys `emit` refuses in event data at any depth: a secret must never reach a receiver.
_SECRET_KEY_HINTS = ("password", "secret", "token", "apikey", "api_key", "credential")


# Endpoints


def new_signing_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


async def check_webhook_url(url: str, settings: Settings) -> None:
    """400 VALIDATION_ERROR on `url` unless it may receive webhooks: https outside
    development and test, and a public address unless private networks are allowed."""
    try:
        await check_url(url, settings)
    except NetguardError as exc:
        raise ValidationFailed.for_field("url", exc.message) from None


async def create_endpoint(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    workspace_id: str,
    data: WebhookCreate,
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret, which is never readable again."""
    await check_webhook_url(data.url, settings)
    secret = new_signing_secret()
    endpoint = WebhookEndpoint(
        workspace_id=workspace_id,
        url=data.url,
        description=data.description,
        event_types=data.event_types or [events.ALL_EVENTS],
        enabled=data.enabled,
        secret_enc=keyring.encrypt(secret),
        failed_deliveries_in_row=0,
        disabled_at=None if data.enabled else utcnow(),
        disabled_reason=None if data.enabled else "Created disabled",
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def list_endpoints(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[WebhookEndpoint], int]:
    repository = EndpointRepository(session)
    return await repository.paginate(
        repository.owned_by(workspace_id), page, WebhookEndpoint.created_at, WebhookEndpoint.id
    )


async def get_endpoint(
    session: AsyncSession, workspace_id: str, webhook_id: str
) -> WebhookEndpoint:
    return await EndpointRepository(session).get(workspace_id, webhook_id)


async def update_endpoint(
    session: AsyncSession, settings: Settings, endpoint: WebhookEndpoint, data: WebhookUpdate
) -> WebhookEndpoint:
    now = utcnow()
    if data.url is not None and data.url != endpoint.url:
        await check_webhook_url(data.url, settings)
        endpoint.url = data.url
    if "event_types" in data.model_fields_set:
        endpoint.event_types = data.event_types or [events.ALL_EVENTS]
    if data.description is not None:
        endpoint.description = data.description
    if data.enabled is True and not endpoint.enabled:
        # A fresh start: past failures no longer count towards disabling it again.
        endpoint.enabled = True
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.failed_deliveries_in_row = 0
        endpoint.failing_since = None
    elif data.enabled is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_at = now
        endpoint.disabled_reason = "Disabled through the API"
        await session.flush()
        await _cancel_pending_deliveries(session, endpoint.id, "The webhook was disabled", now)
    endpoint.updated_at = now
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Its deliveries go with it; their workflows find nothing left to send."""
    await session.delete(endpoint)
    await session.flush()


# The outbox


async def emit(
    session: AsyncSession, workspace_id: str, event_type: str, data: dict[str, Any]
) -> None:
    """Record an `event_type` event and a delivery to each enabled endpoint of the
    workspace subscribed to it, in the caller's transaction (flush only).

    `event_type` is a name from `webhooks.events` (ValueError otherwise); `data`
    is JSON-serialisable, camelCase, and free of secrets: keys that look like one
    (password, secret, token, ...) raise ValueError. Nothing is sent before the
    caller commits, and nothing ever if it rolls back. Without a subscribed
    endpoint nothing is recorded. Safe to call from a request, a service, or a
    DBOS step (the enqueue then happens outside the step, as DBOS requires).
    The enqueue is an after-commit callback, so it runs for sessions of
    `Database.transaction` (requests and job steps); rows committed any other
    way are sent by the sweeper within a minute.
    """
    _check_event(event_type, data)
    endpoints = await session.scalars(_enabled_endpoints(workspace_id))
    targets = [e for e in endpoints if events.subscribes_to(e.event_types, event_type)]
    if targets:
        await _record_event(session, workspace_id, event_type, data, targets)


async def emit_many(
    session: AsyncSession,
    workspace_id: str,
    emitted: Sequence[tuple[str, dict[str, Any]]],
    *,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> None:
    """`emit` for each (event type, data) of `emitted`, in order, for a batch: one
    read of the endpoints and one multi-row insert per table, where `emit` would
    read and flush once per event. Same checks, rows, deliveries and enqueueing.

    `endpoints` are the workspace's `enabled_endpoints` when the caller has already
    read them in this transaction (to decide what to emit at all); read here otherwise.
    """
    for event_type, data in emitted:
        _check_event(event_type, data)
    if not emitted:
        return
    if endpoints is None:
        endpoints = await enabled_endpoints(session, workspace_id)
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event_type, data in emitted:
        targets = [e for e in endpoints if events.subscribes_to(e.event_types, event_type)]
        if not targets:
            continue
        # One clock reading per row, as the ORM's defaults give `emit`'s rows:
        # listings and the sweeper order by created_at.
        event_id = new_id()
        event_rows.append(
            {
                "id": event_id,
                "workspace_id": workspace_id,
                "type": event_type,
                "data": dict(data),
                "created_at": utcnow(),
            }
        )
        for endpoint in targets:
            now = utcnow()
            delivery_rows.append(
                {
                    "id": new_id(),
                    "workspace_id": workspace_id,
                    "endpoint_id": endpoint.id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "status": DeliveryStatus.PENDING,
                    "attempt_count": 0,
                    "retry_of_id": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if not event_rows:
        return
    await session.execute(insert(WebhookEvent), event_rows)
    await session.execute(insert(WebhookDelivery), delivery_rows)
    _enqueue_after_commit(session, [row["id"] for row in delivery_rows])


def _check_event(event_type: str, data: dict[str, Any]) -> None:
    if not events.is_known(event_type):
        raise ValueError(f"unknown webhook event type {event_type!r}: add it to webhooks.events")
    _refuse_secret_keys(data, path="data")
    json.dumps(data)  # a TypeError here names the caller, not a later flush


def _enabled_endpoints(workspace_id: str) -> Select[WebhookEndpoint]:
    return select(WebhookEndpoint).where(
        WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.enabled.is_(True)
    )


async def enabled_endpoints(session: AsyncSession, workspace_id: str) -> list[WebhookEndpoint]:
    """The endpoints `emit` would send the workspace's events to, for `subscribed_to`
    and `emit_many`: a batch reads them once."""
    return list(await session.scalars(_enabled_endpoints(workspace_id)))


def subscribed_to(
    endpoints: Sequence[WebhookEndpoint], event_types: Iterable[str]
) -> frozenset[str]:
    """Which of `event_types` one of `endpoints` takes."""
    return frozenset(
        event_type
        for event_type in event_types
        if any(events.subscribes_to(e.event_types, event_type) for e in endpoints)
    )


async def subscribed_events(
    session: AsyncSession, workspace_id: str, event_types: Iterable[str]
) -> frozenset[str]:
    """Which of `event_types` an enabled endpoint of the workspace takes. For batches:
    `emit` looks the endpoints up on every call, a query per event; a batch asks once
    and emits only what someone subscribed to."""
    return subscribed_to(await enabled_endpoints(session, workspace_id), event_types)


def _refuse_secret_keys(value: Any, *, path: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            lowered = str(key).lower()
            if any(hint in lowered for hint in _SECRET_KEY_HINTS):
                raise ValueError(f"webhook event data may not carry secrets: {path}.{key}")
            _refuse_secret_keys(item, path=f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_secret_keys(item, path=f"{path}[{index}]")


async def _record_event(
    session: AsyncSession,
    workspace_id: str,
    event_type: str,
    data: Mapping[str, Any],
    targets: Sequence[WebhookEndpoint],
) -> list[WebhookDelivery]:
    event = WebhookEvent(workspace_id=workspace_id, type=event_type, data=dict(data))
    session.add(event)
    await session.flush()
    deliveries = [
        _new_delivery(workspace_id, endpoint.id, event.id, event_type) for endpoint in targets
    ]
    session.add_all(deliveries)
    await session.flush()
    _enqueue_after_commit(session, [delivery.id for delivery in deliveries])
    return deliveries


def _new_delivery(
    workspace_id: str,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    retry_of_id: str | None = None,
) -> WebhookDelivery:
    return WebhookDelivery(
        workspace_id=workspace_id,
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=event_type,
        status=DeliveryStatus.PENDING,
        attempt_count=0,
        retry_of_id=retry_of_id,
        # Set, not lazily loaded: a new row's attempts are known to be none.
        attempts=[],
    )


def delivery_workflow_id(delivery_id: str) -> str:
    return f"webhook-delivery-{delivery_id}"


async def enqueue_delivery(delivery_id: str) -> None:
    """Enqueue the delivery's workflow; a no-op when it is already enqueued."""
    await jobs.enqueue_named(
        DELIVERY_QUEUE,
        "mailfleet.webhooks.workflows:deliver_webhook",
        delivery_id,
        workflow_id=delivery_workflow_id(delivery_id),
    )


def _enqueue_after_commit(session: AsyncSession, delivery_ids: list[str]) -> None:
    async def enqueue_all() -> None:
        for delivery_id in delivery_ids:
            await enqueue_delivery(delivery_id)

    async def enqueue_outside_any_workflow() -> None:
        # emit() may run inside a DBOS step; jobs.enqueue starts workflows outside
        # the step's context, and their deterministic ids make a re-run of the step
        # enqueue nothing new.
        try:
            await enqueue_all()
        except Exception:
            # The rows are committed; failing the caller now would report a
            # failure for work that happened. The sweeper enqueues them later.
            log.warning(
                "could not enqueue webhook deliveries %s; the sweeper will",
                ",".join(delivery_ids),
                exc_info=True,
            )

    after_commit(session, enqueue_outside_any_workflow)


async def send_test_event(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A webhook.test event to this endpoint only, whatever it subscribes to."""
    _require_enabled(endpoint)
    data = {"webhookId": endpoint.id, "message": "This is a test event from Mailfleet"}
    deliveries = await _record_event(
        session, endpoint.workspace_id, events.WEBHOOK_TEST, data, [endpoint]
    )
    return deliveries[0]


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict(
            f"Webhook {endpoint.id} is disabled; enable it first (PUT with enabled: true)"
        )


# Deliveries


async def list_deliveries(
    session: AsyncSession, endpoint: WebhookEndpoint, page: Page, *, status: str | None = None
) -> tuple[list[WebhookDelivery], int]:
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(DELIVERY_STATUSES)}",
            [{"field": "status", "in": "query", "message": "unknown status"}],
        )
    repository = DeliveryRepository(session)
    query = repository.owned_by(endpoint.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return await repository.newest_first(query, page)


async def get_delivery(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery_id: str
) -> WebhookDelivery:
    return await DeliveryRepository(session).get(endpoint.id, delivery_id)


async def retry_delivery(
    session: AsyncSession, endpoint: WebhookEndpoint, delivery: WebhookDelivery
) -> WebhookDelivery:
    """A new delivery of the same event (same webhook-id, so receivers can deduplicate)."""
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict(f"Delivery {delivery.id} is still in progress")
    _require_enabled(endpoint)
    retry = _new_delivery(
        delivery.workspace_id, endpoint.id, delivery.event_id, delivery.event_type, delivery.id
    )
    session.add(retry)
    await session.flush()
    _enqueue_after_commit(session, [retry.id])
    return retry


def unstarted_delivery_ids_query(limit: int) -> Select[str]:
    """The oldest `limit` pending deliveries no workflow has attempted yet: the rows
    of the partial index `ix_webhook_deliveries_unstarted`, whose predicate this
    condition is (models.UNSTARTED_DELIVERIES). Its values are written into the SQL,
    not bound: SQLite uses a partial index only for a query whose own text implies it."""
    pending: ColumnElement[str] = literal_column(f"'{DeliveryStatus.PENDING.value}'")
    never: ColumnElement[int] = literal_column("0")
    return (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == pending, WebhookDelivery.attempt_count == never)
        .order_by(WebhookDelivery.created_at)
        .limit(limit)
    )


async def unstarted_delivery_ids(session: AsyncSession, limit: int = 1000) -> list[str]:
    """Pending deliveries no workflow has attempted yet: what the sweeper re-enqueues.

    Once attempted, a delivery's workflow is durable and DBOS owns it.
    """
    return list(await session.scalars(unstarted_delivery_ids_query(limit)))


# Bookkeeping for the delivery workflow (each call is one step's transaction)


@dataclass(frozen=True)
class PreparedAttempt:
    url: str
    secret: str
    message_id: str
    body: str


async def prepare_attempt(
    session: AsyncSession, keyring: Keyring, delivery_id: str, attempt: int
) -> PreparedAttempt | str:
    """What to send, or the outcome when there is nothing to send any more."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "missing"
    if delivery.status != DeliveryStatus.PENDING:
        return delivery.status
    if await _recorded_attempt(session, delivery_id, attempt) is not None:
        # This step ran before and recorded this attempt, then the process died.
        return "retry"
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
    event = await session.get(WebhookEvent, delivery.event_id)
    if endpoint is None or event is None:
        return "missing"
    if not endpoint.enabled:
        await _cancel_pending_deliveries(session, endpoint.id, "The webhook was disabled", utcnow())
        return "cancelled"
    payload = events.build_payload(
        event_id=event.id,
        event_type=event.type,
        created_at=event.created_at,
        workspace_id=event.workspace_id,
        data=event.data,
    )
    return PreparedAttempt(
        url=endpoint.url,
        secret=keyring.decrypt(endpoint.secret_enc),
        message_id=event.id,
        body=json.dumps(payload, separators=(",", ":")),
    )


async def _recorded_attempt(
    session: AsyncSession, delivery_id: str, attempt: int
) -> WebhookDeliveryAttempt | None:
    found: WebhookDeliveryAttempt | None = await session.scalar(
        select(WebhookDeliveryAttempt).where(
            WebhookDeliveryAttempt.delivery_id == delivery_id,
            WebhookDeliveryAttempt.attempt == attempt,
        )
    )
    return found


async def record_attempt(
    session: AsyncSession,
    delivery_id: str,
    attempt: int,
    result: AttemptResult,
    next_delay: float | None,
) -> str:
    """Record one attempt; "succeeded", "failed" (no retry left), "retry", or what the
    delivery became meanwhile. `next_delay` is None for the last attempt."""
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "missing"
    if await _recorded_attempt(session, delivery_id, attempt) is not None:
        return "retry" if delivery.status == DeliveryStatus.PENDING else delivery.status
    now = utcnow()
    session.add(
        WebhookDeliveryAttempt(
            delivery_id=delivery_id,
            attempt=attempt,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            response_body=result.response_body,
            error=_clipped(result.error, 1000),
            redirect_location=_clipped(result.redirect_location, 2048),
            created_at=now,
        )
    )
    delivery.attempt_count = attempt
    delivery.last_status_code = result.status_code
    delivery.last_error = _clipped(result.error, 1000)
    delivery.updated_at = now
    endpoint_id = delivery.endpoint_id
    if result.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.finished_at = now
        delivery.next_attempt_at = None
        await session.flush()
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(failed_deliveries_in_row=0, failing_since=None)
        )
        return "succeeded"
    if delivery.status != DeliveryStatus.PENDING:
        # Cancelled while this attempt was in flight: keep the attempt, not a retry.
        await session.flush()
        return delivery.status
    if next_delay is None:
        delivery.status = DeliveryStatus.FAILED
        delivery.finished_at = now
        delivery.next_attempt_at = None
        outcome = "failed"
    else:
        delivery.next_attempt_at = now + timedelta(seconds=next_delay)
        outcome = "retry"
    await session.flush()
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
    )
    if outcome == "failed":
        # An expression, not read-modify-write: deliveries fail concurrently.
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(failed_deliveries_in_row=WebhookEndpoint.failed_deliveries_in_row + 1)
        )
    await _disable_if_failing(session, endpoint_id, now)
    return outcome


def _clipped(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


async def _disable_if_failing(session: AsyncSession, endpoint_id: str, now: datetime) -> None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    if endpoint is None or not endpoint.enabled:
        return
    if endpoint.failed_deliveries_in_row >= DISABLE_AFTER_FAILED_DELIVERIES:
        reason = f"{endpoint.failed_deliveries_in_row} deliveries in a row failed on every attempt"
    elif endpoint.failing_since is not None and now - endpoint.failing_since >= (
        DISABLE_AFTER_FAILING_FOR
    ):
        reason = "Deliveries have failed for more than 24 hours without a success"
    else:
        return
    # Conditional, so of two deliveries deciding at once only one disables and tells.
    disabled = await session.scalar(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_at=now, disabled_reason=reason, updated_at=now)
        .returning(WebhookEndpoint.id)
    )
    if disabled is None:
        return
    await session.refresh(endpoint)
    log.warning("webhook %s disabled: %s", endpoint_id, reason)
    await _cancel_pending_deliveries(session, endpoint_id, "The webhook was disabled", now)
    await emit(
        session,
        endpoint.workspace_id,
        events.WEBHOOK_DISABLED,
        {
            "webhookId": endpoint_id,
            # The host only: a webhook URL's path or query often embeds a token.
            "host": urllib.parse.urlsplit(endpoint.url).hostname,
            "reason": reason,
            "disabledAt": isoformat(now),
        },
    )


async def _cancel_pending_deliveries(
    session: AsyncSession, endpoint_id: str, reason: str, now: datetime
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.CANCELLED,
            finished_at=now,
            next_attempt_at=None,
            last_error=reason,
        )
        .execution_options(synchronize_session="fetch")
    )
