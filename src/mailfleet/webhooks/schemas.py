"""Request and response shapes of webhook endpoints and their deliveries."""

from __future__ import annotations

from pydantic import Field, field_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.webhooks import events

URL_FIELD = Field(
    min_length=1, max_length=2048, description="https:// (http allowed in development)"
)
EVENT_TYPES_FIELD = Field(
    default=None,
    max_length=len(events.CATALOGUE) + 1,
    description='Event types to receive; ["*"] or omitted for all',
)


def _subscription(value: list[str] | None) -> list[str] | None:
    return None if value is None else events.normalize_subscription(value)


class WebhookCreate(ApiModel):
    model_config = example(
        {
            "url": "https://hooks.example.com/mailfleet",
            "eventTypes": ["mailbox.created", "mailbox.verification_failed"],
            "description": "CRM sync",
        }
    )

    url: str = URL_FIELD
    event_types: list[str] | None = EVENT_TYPES_FIELD
    description: str = Field(default="", max_length=1000)
    enabled: bool = True

    _types = field_validator("event_types")(_subscription)


class WebhookUpdate(ApiModel):
    """Fields left out keep their value."""

    model_config = example({"enabled": True})

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[str] | None = EVENT_TYPES_FIELD
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = Field(
        default=None, description="true re-enables an endpoint disabled after failures"
    )

    _types = field_validator("event_types")(_subscription)


class WebhookOut(ApiOut):
    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_at: Timestamp | None
    disabled_reason: str | None
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="The Standard Webhooks signing secret (whsec_...). Shown only here, once."
    )


class EventTypeOut(ApiOut):
    name: str
    description: str
    data_fields: list[str]


class DeliveryAttemptOut(ApiOut):
    attempt: int
    status_code: int | None
    latency_ms: int | None
    response_body: str | None = Field(description="The first 500 bytes of the answer")
    error: str | None
    redirect_location: str | None = Field(description="Where a 3xx pointed; never followed")
    created_at: Timestamp


class DeliveryOut(ApiOut):
    id: str
    webhook_id: str
    event_id: str = Field(description="Also the webhook-id header: the same on every retry")
    event_type: str
    status: str = Field(description="pending, succeeded, failed or cancelled")
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: Timestamp | None
    finished_at: Timestamp | None
    retry_of: str | None = Field(description="The delivery this one manually retries")
    attempts: list[DeliveryAttemptOut]
    created_at: Timestamp
    updated_at: Timestamp
