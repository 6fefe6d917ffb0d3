"""Request dependencies: the session, settings, who is asking and what they may do.

`Annotated` aliases keep endpoints short: `session: SessionDep`, `actor:
ActorDep` (any authenticated caller). Permissions are one dependency each, so a
route says in its signature what it needs and the check runs before the
endpoint does:

- `WorkspaceReadDep`: any member of the workspace (viewers included);
- `WorkspaceWriteDep`: members who may change things (not viewers);
- `WorkspaceManageDep`: the workspace's owners and admins;
- `SuperuserDep`: a superuser, through a user key or a login (not a workspace key).

`workspace_permission()` builds the same checks for a workspace named in the
path (workspaces/) or one a superuser may reach anywhere (billing/).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Final, Literal

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.accounts import security
from mailfleet.accounts import service as accounts
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Forbidden, MailfleetError, NotFound, Unauthorized
from mailfleet.mail.discovery import Discoverer
from mailfleet.models import ApiKey, User, Workspace
from mailfleet.workspaces import service as workspaces

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
VIEWER_MESSAGE: Final = "Viewers have read-only access to this workspace"
MANAGER_MESSAGE: Final = "Only the workspace's owners and admins may do this"


def client_address(request: Request) -> str:
    """Who is calling, for the login throttle. Behind a proxy, uvicorn's
    proxy_headers puts the forwarded client address here."""
    return request.client.host if request.client else "unknown"


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed after the endpoint returns (or raises
    an error that keeps its writes); rolled back on any other error."""
    database: Database = request.app.state.database
    async with database.transaction() as session:
        try:
            yield session
        except MailfleetError as exc:
            if exc.keeps_writes:
                await session.commit()
            raise


async def get_discoverer(request: Request) -> Discoverer:
    """One discoverer per app, so its cache serves every request."""
    discoverer: Discoverer | None = getattr(request.app.state, "discoverer", None)
    if discoverer is None:
        settings: Settings = request.app.state.settings
        discoverer = Discoverer(
            nameservers=settings.dns_nameservers or None,
            allow_private=settings.allow_private_networks,
            tls_ca_file=settings.tls_ca_file,
        )
        request.app.state.discoverer = discoverer
    return discoverer


SettingsDep = Annotated[Settings, Depends(get_settings)]
DiscovererDep = Annotated[Discoverer, Depends(get_discoverer)]
KeyringDep = Annotated[Keyring, Depends(get_keyring)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# Declared for OpenAPI (the Authorize button, generated clients sending the key);
# auto_error is off so a missing credential is our own 401 in the envelope.
api_key_scheme: Final = APIKeyHeader(
    name="x-api-key",
    scheme_name="ApiKey",
    description="An API key (mf_...): a user key, or a workspace key bound to one workspace",
    auto_error=False,
)
bearer_scheme: Final = HTTPBearer(
    scheme_name="Bearer",
    bearerFormat="JWT",
    description="The token from POST /v1/auth/login; an API key is accepted here too",
    auto_error=False,
)


def presented_credential(request: Request) -> str | None:
    api_key = request.headers.get("x-api-key")
    if api_key:
        return api_key.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@dataclass(frozen=True)
class Actor:
    """An authenticated caller: a user, through a JWT or one of their API keys."""

    user: User
    api_key: ApiKey | None
    # The workspace the request acts in and the user's role there, when the key's
    # look-up read them (see accounts.find_usable_api_key): one query fewer.
    membership: tuple[Workspace, str] | None = None

    @property
    def workspace_scope(self) -> str | None:
        """The one workspace a workspace key is bound to (None: any of the user's)."""
        if self.api_key is not None and self.api_key.scope == "workspace":
            return self.api_key.workspace_id
        return None


async def authenticate(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    api_key: Annotated[str | None, Security(api_key_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Actor:
    # x-api-key wins over Authorization, as presented_credential() reads them.
    credential = api_key.strip() if api_key else bearer.credentials if bearer else None
    if credential is None:
        raise Unauthorized("Missing credentials: send x-api-key or Authorization: Bearer")
    if security.looks_like_api_key(credential):
        found = await accounts.find_usable_api_key(
            session, credential, request.headers.get("x-workspace-id") or None
        )
        if found is None:
            raise Unauthorized("Invalid or revoked API key")
        request.state.actor_id = found.user.id
        return Actor(user=found.user, api_key=found.key, membership=found.membership)
    claims = security.read_jwt(credential, settings.jwt_signing_secret())
    user = await accounts.get_active_user(session, claims.user_id) if claims else None
    # A token from before the user's last password change is over, as if expired.
    if user is None or claims is None or claims.epoch != user.token_epoch:
        raise Unauthorized("Invalid or expired token")
    request.state.actor_id = user.id
    return Actor(user=user, api_key=None)


ActorDep = Annotated[Actor, Depends(authenticate)]


async def require_user_credential(actor: ActorDep) -> Actor:
    """Keys and workspaces are managed by the user themselves, not by a key bound to
    one workspace."""
    if actor.workspace_scope is not None:
        raise Forbidden("A workspace API key cannot do this; use a user key or login")
    return actor


UserActorDep = Annotated[Actor, Depends(require_user_credential)]


def _is_superuser(actor: Actor) -> bool:
    """Superusers, through their own credential: a workspace key never carries it."""
    return actor.user.is_superuser and actor.workspace_scope is None


def _require_superuser(actor: Actor) -> Actor:
    if not _is_superuser(actor):
        raise Forbidden("Only a superuser (with a user key or login) may do this")
    return actor


async def require_superuser(actor: ActorDep) -> Actor:
    return _require_superuser(actor)


SuperuserDep = Annotated[Actor, Depends(require_superuser)]


@dataclass(frozen=True)
class WorkspaceContext:
    actor: Actor
    workspace: Workspace
    role: str

    @property
    def user(self) -> User:
        return self.actor.user

    @property
    def workspace_id(self) -> str:
        return self.workspace.id


async def member_workspace(
    session: AsyncSession, actor: Actor, workspace_id: str
) -> tuple[Workspace, str]:
    """The workspace and the actor's role there (NOT_FOUND for non-members), from
    what authentication read when it is this workspace."""
    if actor.membership is not None and actor.membership[0].id == workspace_id:
        return actor.membership
    return await workspaces.get_member_workspace(session, workspace_id, actor.user.id)


async def workspace_context(
    request: Request, actor: ActorDep, session: SessionDep
) -> WorkspaceContext:
    """The workspace a request acts in, and the caller's role there.

    A workspace key is bound to its workspace; a user key or JWT picks one with
    `x-workspace-id` (default: the user's default workspace). Viewers read only:
    whatever permission a route declares, a viewer's non-GET request is refused.
    """
    requested = request.headers.get("x-workspace-id") or None
    bound = actor.workspace_scope
    workspace_id: str | None
    if bound is not None:
        if requested is not None and requested != bound:
            raise Forbidden("This API key is bound to another workspace")
        workspace_id = bound
    else:
        workspace_id = requested or actor.user.default_workspace_id
        if workspace_id is None:
            raise Forbidden("No workspace selected: send x-workspace-id")
    workspace, role = await member_workspace(session, actor, workspace_id)
    if role == "viewer" and request.method not in READ_METHODS:
        raise Forbidden(VIEWER_MESSAGE)
    request.state.workspace_id = workspace.id
    return WorkspaceContext(actor=actor, workspace=workspace, role=role)


Level = Literal["read", "write", "manage", "superuser"]
WorkspaceCheck = Callable[..., Awaitable[WorkspaceContext]]
# The level each permission dependency grants, so a test can hold every write
# route to a write permission or stronger.
PERMISSION_LEVELS: dict[Callable[..., object], Level] = {}


def _check(ctx: WorkspaceContext, level: Level, superuser_reach: bool) -> None:
    if level == "superuser":
        _require_superuser(ctx.actor)
    elif level == "manage":
        if ctx.role not in workspaces.MANAGE_ROLES and not (
            superuser_reach and ctx.user.is_superuser
        ):
            raise Forbidden(MANAGER_MESSAGE)
    elif level == "write" and ctx.role == "viewer":
        raise Forbidden(VIEWER_MESSAGE)


def workspace_permission(
    level: Level, *, in_path: bool = False, superuser_reach: bool = False
) -> WorkspaceCheck:
    """A dependency giving the caller's workspace once `level` is checked.

    `in_path`: the workspace is the route's `{workspace_id}` instead of the
    `x-workspace-id` header. `superuser_reach`: a superuser's user credential may
    name any workspace in `x-workspace-id` and manages it (billing).
    """
    if in_path:

        async def from_path(
            workspace_id: str, actor: ActorDep, session: SessionDep
        ) -> WorkspaceContext:
            if actor.workspace_scope not in (None, workspace_id):
                raise Forbidden("This API key is bound to another workspace")
            workspace, role = await member_workspace(session, actor, workspace_id)
            ctx = WorkspaceContext(actor=actor, workspace=workspace, role=role)
            _check(ctx, level, superuser_reach)
            return ctx

        PERMISSION_LEVELS[from_path] = level
        return from_path

    async def from_header(
        request: Request, actor: ActorDep, session: SessionDep
    ) -> WorkspaceContext:
        requested = request.headers.get("x-workspace-id")
        if superuser_reach and requested and _is_superuser(actor):
            workspace = await session.get(Workspace, requested)
            if workspace is None:
                raise NotFound(f"Workspace {requested} not found")
            request.state.workspace_id = workspace.id
            ctx = WorkspaceContext(actor=actor, workspace=workspace, role="owner")
        else:
            ctx = await workspace_context(request, actor, session)
        _check(ctx, level, superuser_reach)
        return ctx

    PERMISSION_LEVELS[from_header] = level
    return from_header


WorkspaceReadDep = Annotated[WorkspaceContext, Depends(workspace_permission("read"))]
WorkspaceDep = WorkspaceReadDep
WorkspaceWriteDep = Annotated[WorkspaceContext, Depends(workspace_permission("write"))]
WorkspaceManageDep = Annotated[WorkspaceContext, Depends(workspace_permission("manage"))]
PERMISSION_LEVELS[require_superuser] = "superuser"
