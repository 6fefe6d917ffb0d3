"""The OpenAPI document as clients generate from it: errors as this API gives them.

FastAPI documents a 422 with its own validation body on every operation that
takes input; this API answers invalid input with a 400 VALIDATION_ERROR in the
envelope (app.py's handler), or in a vendor dialect's error shape. The 422 is
replaced by that 400, in the shape the operation's other errors have.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from mailfleet.kit.envelope import ERROR_STATUSES

_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
_UNUSED = ("HTTPValidationError", "ValidationError")


def _validation_error(responses: dict[str, Any]) -> dict[str, Any]:
    description, code, message = ERROR_STATUSES[400]
    # A dialect route documents its errors in its own model: the 400 is in that too.
    sibling = next(
        (responses[status] for status in ("401", "404", "403") if status in responses), None
    )
    schema = (
        sibling["content"]["application/json"]["schema"]
        if sibling is not None and "content" in sibling
        else {"$ref": _ENVELOPE_REF}
    )
    media: dict[str, Any] = {"schema": schema}
    if schema.get("$ref") == _ENVELOPE_REF:
        details = [
            {"field": "smtp.port", "in": "body", "message": "Input should be a valid integer"}
        ]
        media["example"] = {
            "success": False,
            "error": {"code": code, "message": message, "details": details},
        }
    return {"description": description, "content": {"application/json": media}}


def _errors_as_json(responses: dict[str, Any]) -> None:
    """Errors are JSON even where the route answers HTML or CSV: FastAPI files a
    response model under the route's media type."""
    for status, response in responses.items():
        content = response.get("content", {})
        if not status.startswith(("4", "5")) or "schema" in content.get("application/json", {}):
            continue
        for media_type in [name for name in content if name != "application/json"]:
            moved = content.pop(media_type)
            content.setdefault("application/json", {}).update(moved)


def contract(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace FastAPI's 422 by the 400 this API gives; drop the schemas it used."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            _errors_as_json(responses)
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = _validation_error(responses)
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.get("components", {}).get("schemas", {})
    for name in _UNUSED:  # HTTPValidationError first: it refers to ValidationError
        if f"#/components/schemas/{name}" not in json.dumps(schema):
            components.pop(name, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the contract at /openapi.json (and to /docs) instead of FastAPI's draft."""
    draft = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = contract(draft())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
