"""Workspaces and membership rules."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.kit.errors import Conflict, Forbidden, NotFound
from mailfleet.kit.pagination import Page
from mailfleet.kit.repository import paginate_rows
from mailfleet.models import ConsoleSession, Membership, User, Workspace

WRITE_ROLES = frozenset({"owner", "admin", "member"})
MANAGE_ROLES = frozenset({"owner", "admin"})


async def create_workspace(
    session: AsyncSession, owner: User, *, name: str, description: str = ""
) -> Workspace:
    workspace = Workspace(name=name, description=description, owner_id=owner.id)
    session.add(workspace)
    await session.flush()
    session.add(Membership(workspace_id=workspace.id, user_id=owner.id, role="owner"))
    if owner.default_workspace_id is None:
        owner.default_workspace_id = workspace.id
    await session.flush()
    return workspace


async def role_in(session: AsyncSession, workspace_id: str, user_id: str) -> str | None:
    return await session.scalar(
        select(Membership.role).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )


async def get_member_workspace(
    session: AsyncSession, workspace_id: str, user_id: str
) -> tuple[Workspace, str]:
    """The workspace and the user's role in it; NOT_FOUND for non-members.

    Non-members get 404 rather than 403 so workspace ids can't be probed.
    """
    row = (
        await session.execute(
            select(Workspace, Membership.role)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Workspace.id == workspace_id, Membership.user_id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Workspace {workspace_id} not found")
    return row[0], row[1]


async def list_member_workspaces(
    session: AsyncSession, user_id: str, page: Page, *, only_id: str | None = None
) -> tuple[list[tuple[Workspace, str]], int]:
    query = (
        select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
    )
    if only_id is not None:
        query = query.where(Workspace.id == only_id)
    rows, total = await paginate_rows(session, query, page, Workspace.created_at, Workspace.id)
    return [(workspace, role) for workspace, role in rows], total


async def update_workspace(
    session: AsyncSession,
    workspace: Workspace,
    role: str,
    *,
    name: str | None,
    description: str | None,
) -> Workspace:
    if role not in MANAGE_ROLES:
        raise Forbidden("Only a workspace owner or admin can change the workspace")
    if name is not None:
        workspace.name = name
    if description is not None:
        workspace.description = description
    await session.flush()
    return workspace


async def list_members(session: AsyncSession, workspace_id: str) -> list[tuple[Membership, User]]:
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(Membership.created_at, Membership.id)
    )
    return [(membership, user) for membership, user in rows]


def _require_manager(role: str) -> None:
    if role not in MANAGE_ROLES:
        raise Forbidden("Only a workspace owner or admin can manage members")


async def add_member(
    session: AsyncSession, workspace: Workspace, actor_role: str, *, email: str, role: str
) -> tuple[Membership, User]:
    """Add an existing user to the workspace with a role below owner."""
    _require_manager(actor_role)
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No user with email {email}")
    if await role_in(session, workspace.id, user.id) is not None:
        raise Conflict("This user is already a member of the workspace")
    membership = Membership(workspace_id=workspace.id, user_id=user.id, role=role)
    session.add(membership)
    if user.default_workspace_id is None:
        user.default_workspace_id = workspace.id
    await session.flush()
    return membership, user


async def _membership(session: AsyncSession, workspace_id: str, user_id: str) -> Membership:
    membership = await session.scalar(
        select(Membership).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )
    if membership is None:
        raise NotFound(f"User {user_id} is not a member of this workspace")
    return membership


async def change_member_role(
    session: AsyncSession, workspace: Workspace, actor_role: str, user_id: str, role: str
) -> tuple[Membership, User]:
    _require_manager(actor_role)
    membership = await _membership(session, workspace.id, user_id)
    if membership.role == "owner":
        raise Forbidden("The owner's role cannot be changed")
    membership.role = role
    await session.flush()
    user = await session.get(User, user_id)
    assert user is not None
    return membership, user


async def remove_member(
    session: AsyncSession, workspace: Workspace, actor_role: str, user_id: str
) -> None:
    _require_manager(actor_role)
    membership = await _membership(session, workspace.id, user_id)
    if membership.role == "owner":
        raise Forbidden("The owner cannot be removed")
    await session.delete(membership)
    user = await session.get(User, user_id)
    if user is not None and user.default_workspace_id == workspace.id:
        user.default_workspace_id = None
    # Their console sessions end: a removed member signs in again, and sees only
    # the workspaces still theirs.
    await session.execute(
        delete(ConsoleSession)
        .where(ConsoleSession.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
