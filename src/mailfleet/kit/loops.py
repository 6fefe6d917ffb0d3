"""The event loop Mailfleet's own processes run on: uvloop (libuv's), which costs
less CPU per socket operation than the standard library's selector loop. `serve`
gets it from uvicorn (with httptools' HTTP parser); `worker` and the bulk login
process ask for it here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
