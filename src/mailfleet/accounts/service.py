"""Users, logins and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Select, String, and_, bindparam, case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.accounts import security, usage
from mailfleet.accounts.repository import ApiKeyRepository
from mailfleet.accounts.throttle import login_throttle
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict, Forbidden, Unauthorized
from mailfleet.models import ApiKey, ConsoleSession, Membership, User, Workspace
from mailfleet.workspaces import service as workspaces


async def create_user(
    session: AsyncSession, *, email: str, password: str, name: str = ""
) -> tuple[User, Workspace]:
    """A user and their default workspace, which they own."""
    email = email.strip().lower()
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("A user with this email already exists")
    user = User(email=email, name=name, password_hash=security.hash_password(password))
    session.add(user)
    await session.flush()
    workspace = await workspaces.create_workspace(session, user, name="Default workspace")
    return user, workspace


async def login(session: AsyncSession, *, email: str, password: str) -> User:
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        security.burn_password_check(password)
        raise Unauthorized("Invalid email or password")
    if not security.verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthorized("Invalid email or password")
    return user


async def change_password(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    current: str,
    new: str,
    address: str,
    keep_console_session: str | None = None,
) -> None:
    """Replace the user's password once `current` is proved, and end their console
    sessions but `keep_console_session` (the one asking, if any) and every login
    token issued before (`token_epoch`): a stolen cookie or token dies with the old
    password. API keys stay; they are revoked one by one.

    A wrong `current` is 403 and counts as a failed login of the user's email from
    `address` (`login_throttle`), so a borrowed session cannot guess the password
    faster than the login form could; past the limit, 429.
    """
    login_throttle.check(address, user.email, settings)
    if not security.verify_password(user.password_hash, current):
        login_throttle.failed(address, user.email, settings)
        raise Forbidden("The current password is wrong")
    login_throttle.succeeded(user.email)
    user.password_hash = security.hash_password(new)
    user.token_epoch += 1
    others = delete(ConsoleSession).where(ConsoleSession.user_id == user.id)
    if keep_console_session is not None:
        others = others.where(ConsoleSession.id != keep_console_session)
    await session.execute(others.execution_options(synchronize_session=False))
    await session.flush()


async def get_active_user(session: AsyncSession, user_id: str) -> User | None:
    user = await session.get(User, user_id)
    return user if user is not None and user.is_active else None


@dataclass(frozen=True)
class CreatedApiKey:
    key: ApiKey
    secret: str


async def create_api_key(
    session: AsyncSession,
    user: User,
    *,
    name: str,
    scope: str,
    workspace_id: str | None,
) -> CreatedApiKey:
    if scope == "workspace":
        if workspace_id is None:
            raise Forbidden("A workspace key needs a workspace")
        _, role = await workspaces.get_member_workspace(session, workspace_id, user.id)
        if role not in workspaces.MANAGE_ROLES:
            raise Forbidden("Only a workspace owner or admin can create workspace keys")
    else:
        workspace_id = None
    generated = security.generate_api_key(scope)
    key = ApiKey(
        name=name,
        scope=scope,
        display_prefix=generated.display_prefix,
        digest=generated.digest,
        user_id=user.id,
        workspace_id=workspace_id,
    )
    session.add(key)
    await session.flush()
    return CreatedApiKey(key=key, secret=generated.secret)


async def list_api_keys(session: AsyncSession, user: User) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at, ApiKey.id)
    )
    return list(rows)


async def revoke_api_key(session: AsyncSession, user: User, key_id: str) -> ApiKey:
    key = await ApiKeyRepository(session).get(user.id, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key


@dataclass(frozen=True)
class KeyHolder:
    """A live API key, its active user, and the workspace the request acts in with
    the user's role there (`membership`, None when the user is no member of it)."""

    key: ApiKey
    user: User
    membership: tuple[Workspace, str] | None


def _key_holder_query() -> Select[ApiKey, User, Workspace, str]:
    target = case(
        (ApiKey.scope == "workspace", ApiKey.workspace_id),
        else_=func.coalesce(bindparam("requested", type_=String), User.default_workspace_id),
    )
    return (
        select(ApiKey, User, Workspace, Membership.role)
        .join(User, User.id == ApiKey.user_id)
        .outerjoin(
            Membership, and_(Membership.user_id == User.id, Membership.workspace_id == target)
        )
        .outerjoin(Workspace, Workspace.id == Membership.workspace_id)
        .where(
            ApiKey.digest == bindparam("digest", type_=String),
            ApiKey.revoked_at.is_(None),
            User.is_active.is_(True),
        )
    )


# Every authenticated request runs it: built once, with its values bound per call
# (building it cost more CPU than SQLite spends answering it).
_KEY_HOLDER: Final = _key_holder_query()


async def find_usable_api_key(
    session: AsyncSession, secret: str, requested_workspace: str | None = None
) -> KeyHolder | None:
    """The live key behind a presented secret and its active user, in one query.
    Its use is noted in memory (`usage`), not written here: a request that only
    reads stays a reader.

    The same query reads the workspace the request will act in (a workspace key's
    own; for a user key `requested_workspace`, else the user's default) and the
    user's role there, which a workspace route would otherwise ask for in a second
    query. Whether the request may act there is still decided by the caller."""
    row = (
        await session.execute(
            _KEY_HOLDER,
            {"digest": security.digest_api_key(secret), "requested": requested_workspace},
        )
    ).first()
    if row is None:
        return None
    key, user, workspace, role = row
    usage.note_use(key, utcnow())
    membership = (workspace, role) if workspace is not None and role is not None else None
    return KeyHolder(key=key, user=user, membership=membership)


@dataclass(frozen=True)
class Bootstrap:
    user: User
    workspace: Workspace
    api_key: str


async def bootstrap(
    session: AsyncSession, *, email: str, password: str, force: bool = False
) -> Bootstrap:
    """The first user: an owner with a default workspace and a user API key.

    Once anyone exists, another "first user" (a superuser with a fresh key) is
    made only when asked for explicitly: running the quick start twice must not
    mint a second superuser by accident.
    """
    if not force and await session.scalar(select(User.id).limit(1)) is not None:
        raise Conflict(
            "Mailfleet already has users, so there is no first user to create; "
            "a superuser adds users with POST /v1/users, or pass --force to create "
            "another superuser anyway"
        )
    user, workspace = await create_user(session, email=email, password=password)
    user.is_superuser = True
    created = await create_api_key(session, user, name="bootstrap", scope="user", workspace_id=None)
    return Bootstrap(user=user, workspace=workspace, api_key=created.secret)
