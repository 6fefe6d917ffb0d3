"""Request dependencies: the session, settings and who is asking.

`Annotated` aliases keep endpoints short: `session: SessionDep`,
`actor: ActorDep` (any authenticated caller) and `ctx: WorkspaceDep` (a caller
acting in one workspace, with their role in it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.accounts import security
from mailfleet.accounts import service as accounts
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Forbidden, Unauthorized
from mailfleet.mail.discovery import Discoverer
from mailfleet.models import ApiKey, User, Workspace
from mailfleet.workspaces import service as workspaces

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed after the endpoint returns."""
    database: Database = request.app.state.database
    async with database.transaction() as session:
        yield session


def get_discoverer(request: Request) -> Discoverer:
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

    @property
    def workspace_scope(self) -> str | None:
        """The one workspace a workspace key is bound to (None: any of the user's)."""
        if self.api_key is not None and self.api_key.scope == "workspace":
            return self.api_key.workspace_id
        return None


async def authenticate(request: Request, session: SessionDep, settings: SettingsDep) -> Actor:
    credential = presented_credential(request)
    if credential is None:
        raise Unauthorized("Missing credentials: send x-api-key or Authorization: Bearer")
    if security.looks_like_api_key(credential):
        key = await accounts.find_usable_api_key(session, credential)
        user = await accounts.get_active_user(session, key.user_id) if key else None
        if key is None or user is None:
            raise Unauthorized("Invalid or revoked API key")
        request.state.actor_id = user.id
        return Actor(user=user, api_key=key)
    user_id = security.read_jwt_subject(credential, settings.jwt_signing_secret())
    user = await accounts.get_active_user(session, user_id) if user_id else None
    if user is None:
        raise Unauthorized("Invalid or expired token")
    request.state.actor_id = user.id
    return Actor(user=user, api_key=None)


ActorDep = Annotated[Actor, Depends(authenticate)]


def require_user_credential(actor: ActorDep) -> Actor:
    """Managing keys is for the user themselves, not for a key bound to one workspace."""
    if actor.workspace_scope is not None:
        raise Forbidden("A workspace API key cannot manage API keys; use a user key or login")
    return actor


UserActorDep = Annotated[Actor, Depends(require_user_credential)]


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


async def workspace_context(
    request: Request, actor: ActorDep, session: SessionDep
) -> WorkspaceContext:
    """The workspace a request acts in, and the caller's role there.

    A workspace key is bound to its workspace; a user key or JWT picks one with
    `x-workspace-id` (default: the user's default workspace). Viewers read only.
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
    workspace, role = await workspaces.get_member_workspace(session, workspace_id, actor.user.id)
    if role == "viewer" and request.method not in READ_METHODS:
        raise Forbidden("Viewers have read-only access to this workspace")
    request.state.workspace_id = workspace.id
    return WorkspaceContext(actor=actor, workspace=workspace, role=role)


WorkspaceDep = Annotated[WorkspaceContext, Depends(workspace_context)]
