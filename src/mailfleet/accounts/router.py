from __future__ import annotations

from fastapi import APIRouter, Request, status

from mailfleet.accounts import security, usage
from mailfleet.accounts import service as accounts
from mailfleet.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    LoginRequest,
    LoginResult,
    PasswordChange,
    UserCreate,
    UserOut,
)
from mailfleet.accounts.throttle import login_throttle
from mailfleet.deps import (
    ActorDep,
    SessionDep,
    SettingsDep,
    SuperuserDep,
    UserActorDep,
    client_address,
)
from mailfleet.kit.envelope import AUTH_ERRORS, Envelope, errors, ok
from mailfleet.kit.errors import Unauthorized
from mailfleet.models import ApiKey

router = APIRouter(prefix="/v1", tags=["accounts"])


# Public: the credential is in the body.
@router.post("/auth/login", operation_id="auth:login", responses=errors(401, 429))
async def login(
    body: LoginRequest, request: Request, session: SessionDep, settings: SettingsDep
) -> Envelope[LoginResult]:
    address = client_address(request)
    login_throttle.check(address, body.email, settings)
    try:
        user = await accounts.login(session, email=body.email, password=body.password)
    except Unauthorized:
        login_throttle.failed(address, body.email, settings)
        raise
    login_throttle.succeeded(body.email)
    token, expires = security.issue_jwt(
        user.id, user.token_epoch, settings.jwt_signing_secret(), settings.jwt_ttl_seconds
    )
    return ok(LoginResult(token=token, expires_at=expires))


@router.get("/users/me", operation_id="users:me", responses=errors(401))
async def me(actor: ActorDep) -> Envelope[UserOut]:
    return ok(UserOut.model_validate(actor.user))


@router.post(
    "/users/me/password",
    operation_id="users:change_password",
    responses={**AUTH_ERRORS, **errors(429)},
)
async def change_password(
    body: PasswordChange,
    request: Request,
    actor: UserActorDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Envelope[None]:
    """Change your own password (a user key or login token, not a workspace key): 403
    when `currentPassword` is wrong, throttled as logins are. Ends your console
    sessions and every login token issued before (the one asking included: log in
    again); API keys stay valid."""
    await accounts.change_password(
        session,
        settings,
        actor.user,
        current=body.current_password,
        new=body.new_password,
        address=client_address(request),
    )
    return ok(None, "Password changed")


@router.post(
    "/users",
    operation_id="users:create",
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, **errors(409)},
)
async def create_user(
    body: UserCreate, actor: SuperuserDep, session: SessionDep
) -> Envelope[UserOut]:
    """Create a user with their own default workspace (superusers only)."""
    user, _ = await accounts.create_user(
        session, email=body.email, password=body.password, name=body.name
    )
    return ok(UserOut.model_validate(user), "User created")


@router.post(
    "/api-keys",
    operation_id="api_keys:create",
    status_code=status.HTTP_201_CREATED,
    responses={**AUTH_ERRORS, **errors(404)},
)
async def create_api_key(
    body: ApiKeyCreate, request: Request, actor: UserActorDep, session: SessionDep
) -> Envelope[ApiKeyCreated]:
    workspace_id = body.workspace_id
    if body.scope == "workspace" and workspace_id is None:
        workspace_id = request.headers.get("x-workspace-id") or actor.user.default_workspace_id
    created = await accounts.create_api_key(
        session, actor.user, name=body.name, scope=body.scope, workspace_id=workspace_id
    )
    out = ApiKeyCreated(**api_key_out(created.key).model_dump(), key=created.secret)
    return ok(out, "Store this key now: it is not shown again")


@router.get("/api-keys", operation_id="api_keys:list", responses=AUTH_ERRORS)
async def list_api_keys(actor: UserActorDep, session: SessionDep) -> Envelope[list[ApiKeyOut]]:
    keys = await accounts.list_api_keys(session, actor.user)
    return ok([api_key_out(key) for key in keys])


@router.delete(
    "/api-keys/{key_id}", operation_id="api_keys:revoke", responses={**AUTH_ERRORS, **errors(404)}
)
async def revoke_api_key(
    key_id: str, actor: UserActorDep, session: SessionDep
) -> Envelope[ApiKeyOut]:
    key = await accounts.revoke_api_key(session, actor.user, key_id)
    return ok(api_key_out(key), "API key revoked")


def api_key_out(key: ApiKey) -> ApiKeyOut:
    # Uses noted in this process but not written yet count too (accounts.usage).
    out = ApiKeyOut.model_validate(key)
    out.last_used_at = usage.last_used_at(key)
    return out
