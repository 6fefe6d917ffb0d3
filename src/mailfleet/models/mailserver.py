"""What the hosted mail server still owes: deleted mailboxes' mail to remove later."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.kit.clock import utcnow
from mailfleet.models.common import UTCDateTime, id_column


class MailPurge(Base):
    """A deleted hosted mailbox whose mail `mailfleet mailserver run` removes once
    `purge_after` has passed (the retention setting); its login went with the row."""

    __tablename__ = "mail_purges"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(String(24), index=True)
    email: Mapped[str] = mapped_column(String(320))
    # Relative to the mail storage directory: "<domain>/<mailbox id>".
    maildir: Mapped[str] = mapped_column(String(400))
    purge_after: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
