"""What background work needs from the running process: settings, database, keyring.

Requests get these through dependencies; workflows, which run outside any
request, get them here. The app lifespan and `mailfleet worker` set it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    keyring: Keyring


_current: Runtime | None = None


def set_runtime(value: Runtime | None) -> None:
    global _current
    _current = value


def runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("Mailfleet is not started; run it through its app or CLI")
    return _current


async def start(settings: Settings, *, launch_jobs: bool) -> Runtime:
    """Check settings, migrate, open the database, and (optionally) launch the job engine."""
    from mailfleet import jobs
    from mailfleet.migrate import upgrade_database

    settings.check_startup()
    database = Database.from_settings(settings)
    upgrade = await upgrade_database(database)
    log.info("%s", upgrade.describe())
    current = Runtime(settings, database, Keyring(settings.secret_keyring_entries()))
    set_runtime(current)
    if launch_jobs:
        await jobs.launch(settings)
    return current


async def stop(current: Runtime, *, jobs_launched: bool) -> None:
    from mailfleet import jobs
    from mailfleet.mail import login_process

    if jobs_launched:
        # First let the sweeps and pollers end, while the database is still open: a
        # task cancelled mid-query after the pool is disposed can wait on a
        # connection that will never answer, holding up the process's exit.
        await jobs.stop_background_tasks()
        jobs.shutdown()
        await login_process.close_shared()
    set_runtime(None)
    await current.database.dispose()
