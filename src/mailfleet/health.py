from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from mailfleet import __version__
from mailfleet.deps import SessionDep
from mailfleet.kit.envelope import ok

router = APIRouter(tags=["health"])


@router.get("/v1/health")
async def health(session: SessionDep) -> Any:
    await session.execute(text("SELECT 1"))
    return ok({"status": "ok", "version": __version__, "database": "ok"})
