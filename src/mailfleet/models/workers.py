"""Processes running the job engine, and when each was last seen alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import UTCDateTime


class WorkerHeartbeat(Base):
    """One row per executor id (MAILFLEET_WORKER_ID); `last_seen_at` moves every few
    seconds while the process lives. A row left behind is how the others know it died."""

    __tablename__ = "worker_heartbeats"

    executor_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
