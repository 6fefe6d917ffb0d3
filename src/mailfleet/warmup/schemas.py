"""Request and response shapes of warmup settings and analytics."""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example

MAX_DAILY_TARGET = 50
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)"
        ) from exc
    return value


class SendWindowIn(ApiModel):
    start: str = Field(default="08:00", description="HH:MM, in `timezone`")
    end: str = Field(default="18:00", description="HH:MM, in `timezone`, after `start`")
    timezone: str = Field(default="UTC", max_length=64, description="An IANA time zone")

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _TIME_RE.match(value):
            raise ValueError("use HH:MM, 00:00 to 23:59")
        return value

    _zone = field_validator("timezone")(valid_timezone)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindowIn:
        if self.end <= self.start:
            raise ValueError("end must come after start")
        return self


class WarmupSettingsIn(ApiModel):
    """PUT body: fields left out keep their value."""

    model_config = example(
        {
            "enabled": True,
            "startPerDay": 2,
            "rampUpPerDay": 2,
            "dailyTarget": 30,
            "replyRate": 30,
            "sendWindow": {"start": "08:00", "end": "18:00", "timezone": "Europe/Berlin"},
        }
    )

    enabled: bool | None = None
    start_per_day: int | None = Field(default=None, ge=1, le=MAX_DAILY_TARGET)
    ramp_up_per_day: int | None = Field(default=None, ge=0, le=MAX_DAILY_TARGET)
    daily_target: int | None = Field(
        default=None, ge=1, le=MAX_DAILY_TARGET, description="Never above dailySendLimit"
    )
    reply_rate: int | None = Field(default=None, ge=0, le=100, description="Percent")
    send_window: SendWindowIn | None = None


class SendWindowOut(ApiOut):
    start: str
    end: str
    timezone: str


class WarmupSettingsOut(ApiOut):
    mailbox_id: str
    email: str
    enabled: bool
    start_per_day: int
    ramp_up_per_day: int
    daily_target: int
    reply_rate: int
    send_window: SendWindowOut
    state: str
    reason: str | None
    started_on: date | None
    updated_at: Timestamp | None


class WarmupBulkIn(ApiModel):
    """`mailboxIds`, or a filter (`tag`, `poolId`, `domain`), not both."""

    model_config = example({"tag": "warm"})

    mailbox_ids: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    tag: str | None = Field(default=None, max_length=100)
    pool_id: str | None = Field(default=None, max_length=24)
    domain: str | None = Field(default=None, max_length=253)


class SkippedMailbox(ApiOut):
    mailbox_id: str
    reason: str


class WarmupBulkOut(ApiOut):
    updated: list[str]
    skipped: list[SkippedMailbox]


class WarmupTotals(ApiOut):
    sent: int = 0
    received: int = 0
    inbox: int = 0
    spam: int = 0
    promotions: int = 0
    other: int = 0
    missing: int = 0
    saved_from_spam: int = 0
    replied: int = 0


class WarmupDay(ApiOut):
    date: date
    sent: int = 0
    received: int = 0
    inbox: int = 0
    spam: int = 0
    replied: int = 0


class WarmupAnalyticsOut(ApiOut):
    mailbox_id: str
    email: str
    enabled: bool
    state: str
    reason: str | None
    from_: date = Field(serialization_alias="from")
    to: date
    totals: WarmupTotals
    inbox_rate: float | None
    spam_rate: float | None
    health_score: float | None
    daily: list[WarmupDay]
