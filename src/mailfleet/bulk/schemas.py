"""Response shapes of bulk connect jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mailfleet.kit.envelope import ApiOut, Timestamp


class JobCounts(ApiOut):
    pending: int
    connected: int
    failed: int
    duplicate: int
    invalid: int


class BulkJobOut(ApiOut):
    id: str
    status: Literal["queued", "running", "completed", "failed"]
    source: Literal["json", "csv", "saleshandy"]
    total: int = Field(description="Rows in the request")
    counts: JobCounts
    idempotency_key: str | None
    error: str | None = Field(description="Why the job failed, when it did")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    report_url: str = Field(description="One CSV row per request row and its outcome")
