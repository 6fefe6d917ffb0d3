from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from mailfleet.accounts import security
from mailfleet.accounts import service as accounts
from mailfleet.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    LoginResult,
    UserCreate,
    UserOut,
)
from mailfleet.accounts.throttle import login_throttle
from mailfleet.deps import ActorDep, SessionDep, SettingsDep, UserActorDep
from mailfleet.kit.envelope import ERROR_RESPONSES, Envelope, ok
from mailfleet.kit.errors import Forbidden, Unauthorized

router = APIRouter(prefix="/v1", tags=["accounts"], responses=ERROR_RESPONSES)


@router.post("/auth/login", response_model=Envelope[LoginResult])
async def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> Any:
    # Behind a proxy, uvicorn's proxy_headers puts the forwarded client address here.
    address = request.client.host if request.client else "unknown"
    login_throttle.check(address, body.email, settings)
    try:
        user = await accounts.login(session, email=body.email, password=body.password)
    except Unauthorized:
        login_throttle.failed(address, body.email, settings)
        raise
    login_throttle.succeeded(body.email)
    token, expires = security.issue_jwt(
        user.id, settings.jwt_signing_secret(), settings.jwt_ttl_seconds
    )
    return ok(LoginResult(token=token, expires_at=expires))


@router.get("/users/me", response_model=Envelope[UserOut])
async def me(actor: ActorDep) -> Any:
    return ok(UserOut.model_validate(actor.user))


@router.post("/users", response_model=Envelope[UserOut], status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, actor: UserActorDep, session: SessionDep) -> Any:
    """Create a user with their own default workspace (superusers only)."""
    if not actor.user.is_superuser:
        raise Forbidden("Only a superuser can create users")
    user, _ = await accounts.create_user(
        session, email=body.email, password=body.password, name=body.name
    )
    return ok(UserOut.model_validate(user), "User created")


@router.post(
    "/api-keys", response_model=Envelope[ApiKeyCreated], status_code=status.HTTP_201_CREATED
)
async def create_api_key(
    body: ApiKeyCreate, request: Request, actor: UserActorDep, session: SessionDep
) -> Any:
    workspace_id = body.workspace_id
    if body.scope == "workspace" and workspace_id is None:
        workspace_id = request.headers.get("x-workspace-id") or actor.user.default_workspace_id
    created = await accounts.create_api_key(
        session, actor.user, name=body.name, scope=body.scope, workspace_id=workspace_id
    )
    out = ApiKeyCreated(**ApiKeyOut.model_validate(created.key).model_dump(), key=created.secret)
    return ok(out, "Store this key now: it is not shown again")


@router.get("/api-keys", response_model=Envelope[list[ApiKeyOut]])
async def list_api_keys(actor: UserActorDep, session: SessionDep) -> Any:
    keys = await accounts.list_api_keys(session, actor.user)
    return ok([ApiKeyOut.model_validate(key) for key in keys])


@router.delete("/api-keys/{key_id}", response_model=Envelope[ApiKeyOut])
async def revoke_api_key(key_id: str, actor: UserActorDep, session: SessionDep) -> Any:
    key = await accounts.revoke_api_key(session, actor.user, key_id)
    return ok(ApiKeyOut.model_validate(key), "API key revoked")
