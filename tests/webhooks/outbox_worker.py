"""A worker process for the outbox crash test.

It runs Mailfleet's job engine exactly as `mailfleet worker` does (settings
from MAILFLEET_* variables).

    python -m tests.webhooks.outbox_worker emit URL   # register URL, emit, die after commit
    python -m tests.webhooks.outbox_worker deliver    # restart; wait until it is delivered

`emit` commits an event with `emit()` and is SIGKILLed by its own after-commit
callback, registered ahead of the one emit() registers to enqueue the
delivery: the rows are committed, the enqueue never happens. `deliver` starts
again, and the sweeper the job engine runs at launch must deliver it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import select

from mailfleet import runtime
from mailfleet.accounts import service as accounts
from mailfleet.config import Settings
from mailfleet.db import after_commit
from mailfleet.models import WebhookDelivery
from mailfleet.webhooks import service as webhooks
from mailfleet.webhooks.schemas import WebhookCreate

STATE = Path(os.environ["OUTBOX_TEST_DIR"])


async def kill_myself() -> None:
    (STATE / "committed").touch()
    os.kill(os.getpid(), signal.SIGKILL)


async def emit_and_die(url: str) -> None:
    current = await runtime.start(Settings(), launch_jobs=True)
    async with current.database.transaction() as session:
        user, workspace = await accounts.create_user(
            session, email="outbox@example.test", password="password-123"
        )
        _, secret = await webhooks.create_endpoint(
            session,
            current.keyring,
            current.settings,
            workspace.id,
            WebhookCreate(url=url, event_types=["mailbox.created"]),
        )
    (STATE / "secret").write_text(secret)
    async with current.database.transaction() as session:
        after_commit(session, kill_myself)
        await webhooks.emit(
            session, workspace.id, "mailbox.created", {"mailboxId": "m1", "email": user.email}
        )
    raise AssertionError("the after-commit callback should have killed this process")


async def wait_for_delivery() -> None:
    current = await runtime.start(Settings(), launch_jobs=True)
    deadline = time.monotonic() + 60
    try:
        while True:
            async with current.database.transaction() as session:
                delivery = await session.scalar(select(WebhookDelivery))
                assert delivery is not None
                if delivery.status != "pending":
                    print(json.dumps({"id": delivery.id, "status": delivery.status}), flush=True)
                    return
            if time.monotonic() > deadline:
                raise AssertionError("the delivery is still pending")
            await asyncio.sleep(0.1)
    finally:
        await runtime.stop(current, jobs_launched=True)


if __name__ == "__main__":
    if sys.argv[1] == "emit":
        asyncio.run(emit_and_die(sys.argv[2]))
    else:
        asyncio.run(wait_for_delivery())
