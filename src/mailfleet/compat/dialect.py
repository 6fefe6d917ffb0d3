"""Vendor-dialect error rendering: a route class that answers errors in the vendor's shape.

Everything a dialect route raises (auth, validation, service errors) passes
through `render`, so a client written against the vendor's documents sees the
error bodies it expects.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from mailfleet.kit.errors import MailfleetError

ErrorRenderer = Callable[[Request, int, str, list[dict[str, Any]] | None], JSONResponse]


def validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        field = ".".join(location[1:]) if len(location) > 1 else ".".join(location)
        details.append({"field": field, "message": error.get("msg", "invalid")})
    return details


def dialect_route(render: ErrorRenderer) -> type[APIRoute]:
    class DialectRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except MailfleetError as exc:
                    return render(request, exc.status_code, exc.message, exc.extra.get("details"))
                except RequestValidationError as exc:
                    return render(request, 400, "Invalid request", validation_details(exc))

            return handle

    return DialectRoute
