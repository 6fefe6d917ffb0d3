"""The OpenAPI document is a contract a client can be generated from.

Every operation: a schema for each 2xx answer, an `area:verb` operation id,
declared security unless public, the errors it gives in the envelope (or its
vendor dialect's error body) and never FastAPI's unused 422, an example body
when it takes one, and the Idempotency-Key header where it is honoured.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from mailfleet.app import create_app
from mailfleet.deps import PERMISSION_LEVELS, authenticate
from tests.conftest import Account, make_test_settings

PUBLIC = {"health:get", "health:ready", "auth:login", "stripe:webhook"}
OPERATION_ID = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*:[a-z][a-z_]*$")
# Vendor dialects answer errors in the vendor's shape, documented as such.
DIALECT_ERRORS = {
    "/api/v1/": "DeepLeadError",
    "/v1/email-accounts/": "SaleshandyError",
    "/v1/connect-inbox": "LiteMailError",
}
IDEMPOTENT = {
    "bulk:connect",
    "domains.purchases:create",
    "exports:create",
    "export_history:create",
    "exports:connect_inbox",
    "saleshandy.email_accounts:connect",
    "subscriptions:create",
    "subscriptions:update",
    "wallet:top_up",
    "wallet:grant_credit",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def application(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    return create_app(make_test_settings(data_dir, None), start_jobs=False)


@pytest.fixture(scope="module")
def spec(application: FastAPI) -> dict[str, Any]:
    return application.openapi()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved


def is_schema(schema: dict[str, Any] | None) -> bool:
    """A schema that says something: FastAPI's `{"title": ...}` for an untyped answer doesn't."""
    return bool(set(schema or {}) - {"title", "description"})


def test_every_2xx_answer_has_a_schema(spec: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path} {status}"
        for path, method, operation in operations(spec)
        for status, response in operation["responses"].items()
        if status.startswith("2")
        and not any(
            is_schema(media.get("schema")) for media in response.get("content", {}).values()
        )
    ]
    assert missing == []
    assert len(list(operations(spec))) >= 98


def test_operation_ids_read_as_area_and_verb(spec: dict[str, Any]) -> None:
    ids = [operation.get("operationId", "") for _, _, operation in operations(spec)]
    assert [i for i in ids if not OPERATION_ID.match(i)] == []
    assert len(ids) == len(set(ids))
    assert "mailboxes:create" in ids


def test_security_schemes_are_declared(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["type"] == "http"
    assert schemes["Bearer"]["scheme"] == "bearer"


def test_every_operation_but_the_public_ones_declares_security(spec: dict[str, Any]) -> None:
    for path, method, operation in operations(spec):
        security = operation.get("security")
        if operation["operationId"] in PUBLIC:
            assert security is None, f"{method} {path}"
        else:
            # Either scheme will do: two alternatives, not both at once.
            assert security == [{"ApiKey": []}, {"Bearer": []}], f"{method} {path}"


def test_errors_are_the_ones_given_in_the_envelope(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        assert "422" not in responses, f"{method} {path}"
        expected = next(
            (name for prefix, name in DIALECT_ERRORS.items() if path.startswith(prefix)),
            "ErrorEnvelope",
        )
        errors = {status: r for status, r in responses.items() if status.startswith("4")}
        if not operation["operationId"].startswith("health:"):
            assert errors, f"{method} {path} documents no error"
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{expected}"}, (
                f"{method} {path} {status}"
            )
        takes_input = operation.get("parameters") or operation.get("requestBody")
        if takes_input:
            assert "400" in errors, f"{method} {path} takes input but documents no 400"
        if operation.get("security"):
            assert "401" in errors, f"{method} {path}"


def test_write_routes_show_an_example_body(spec: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in operations(spec):
        body = operation.get("requestBody")
        if body is None:
            # Writes without a body (DELETE, retest, rotate...) have nothing to show.
            assert method in WRITE_METHODS or method == "get"
            continue
        for media in body["content"].values():
            schema = resolve(spec, media.get("schema", {}))
            if not ({"example", "examples"} & (set(media) | set(schema))):
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_idempotency_key_is_declared_where_honoured(spec: dict[str, Any]) -> None:
    declared = {
        operation["operationId"]
        for _, _, operation in operations(spec)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "header" and parameter["name"] == "Idempotency-Key"
    }
    assert declared == IDEMPOTENT


def api_routes(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    """Every endpoint, also inside routers FastAPI includes lazily."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from api_routes(router.routes)


def test_example_bodies_are_accepted(application: FastAPI) -> None:
    """An example that its own route refuses would teach clients a 400."""
    checked = 0
    for route in api_routes(application.routes):
        for param in route.dependant.body_params:
            model = param.field_info.annotation
            extra = getattr(model, "model_config", {}).get("json_schema_extra") or {}
            for body in extra.get("examples", []):
                TypeAdapter(model).validate_python(body)
                checked += 1
    assert checked >= 30


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def test_write_routes_require_a_write_permission(application: FastAPI) -> None:
    """Viewers are refused by the permission a write route declares, not by its
    method alone; every route but the public ones authenticates."""
    routes = list(api_routes(application.routes))
    assert len(routes) >= 98
    for route in routes:
        # /docs and /metrics are not API operations (and not in the schema).
        if route.operation_id in PUBLIC or not route.include_in_schema:
            continue
        calls = list(_calls(route.dependant))
        assert authenticate in calls, route.path
        levels = {PERMISSION_LEVELS[call] for call in calls if call in PERMISSION_LEVELS}
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"} and levels:
            assert levels & {"write", "manage", "superuser"}, f"{route.methods} {route.path}"


async def test_a_generated_client_authenticates_with_the_declared_schemes(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """What a generated client does: send the credential where securitySchemes say."""
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    api_key = schemes["ApiKey"]
    assert api_key["in"] == "header"
    me = await client.get("/v1/users/me", headers={api_key["name"]: owner.api_key})
    assert me.status_code == 200, me.text
    assert me.json()["data"]["email"] == owner.email

    login = await client.post(
        "/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    token = login.json()["data"]["token"]
    bearer = schemes["Bearer"]
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"{bearer['scheme'].title()} {token}"}
    )
    assert me.status_code == 200, me.text
    # Neither: our 401 in the envelope, not FastAPI's 403 from an auto_error scheme.
    anonymous = await client.get("/v1/users/me")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"


def test_no_endpoint_or_dependency_runs_in_the_thread_pool(application: FastAPI) -> None:
    """FastAPI runs a plain `def` endpoint or dependency in its thread pool: a hop
    to a worker thread and back on every request using it, which on a busy server
    costs more than the function (a status poll had several, for reading the
    settings and the like). Endpoints and dependencies are `async def`."""

    def in_thread_pool(call: Callable[..., Any]) -> bool:
        target = call if inspect.isroutine(call) else type(call).__call__
        return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))

    sync = {
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in api_routes(application.routes)
        for call in [route.dependant.call, *_calls(route.dependant)]
        if call is not None and in_thread_pool(call)
    }
    assert sorted(sync) == []
