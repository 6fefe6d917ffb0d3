from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from mailfleet.deps import ActorDep, SessionDep
from mailfleet.kit.envelope import ERROR_RESPONSES, Envelope, ListEnvelope, ok
from mailfleet.kit.errors import Forbidden
from mailfleet.kit.pagination import PageDep
from mailfleet.models import Membership, User, Workspace
from mailfleet.workspaces import service as workspaces
from mailfleet.workspaces.schemas import (
    MemberAdd,
    MemberOut,
    MemberUpdate,
    WorkspaceCreate,
    WorkspaceOut,
    WorkspaceUpdate,
)

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=ERROR_RESPONSES)


def _out(workspace: Workspace, role: str) -> WorkspaceOut:
    return WorkspaceOut(
        id=workspace.id,
        name=workspace.name,
        description=workspace.description,
        owner_id=workspace.owner_id,
        role=role,
        created_at=workspace.created_at,
        updated_at=workspace.updated_at,
    )


@router.get("", response_model=ListEnvelope[WorkspaceOut])
async def list_workspaces(actor: ActorDep, session: SessionDep, page: PageDep) -> Any:
    rows, total = await workspaces.list_member_workspaces(
        session, actor.user.id, page, only_id=actor.workspace_scope
    )
    return {
        "success": True,
        "data": [_out(workspace, role) for workspace, role in rows],
        "pagination": page.describe(total),
    }


@router.post("", response_model=Envelope[WorkspaceOut], status_code=status.HTTP_201_CREATED)
async def create_workspace(body: WorkspaceCreate, actor: ActorDep, session: SessionDep) -> Any:
    if actor.workspace_scope is not None:
        raise Forbidden("A workspace API key cannot create workspaces")
    workspace = await workspaces.create_workspace(
        session, actor.user, name=body.name, description=body.description
    )
    return ok(_out(workspace, "owner"), "Workspace created")


@router.put("/{workspace_id}", response_model=Envelope[WorkspaceOut])
async def update_workspace(
    workspace_id: str, body: WorkspaceUpdate, actor: ActorDep, session: SessionDep
) -> Any:
    workspace, role = await _member_workspace(workspace_id, actor, session)
    workspace = await workspaces.update_workspace(
        session, workspace, role, name=body.name, description=body.description
    )
    return ok(_out(workspace, role), "Workspace updated")


def _member(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id, email=user.email, role=membership.role, created_at=membership.created_at
    )


async def _member_workspace(
    workspace_id: str, actor: ActorDep, session: SessionDep
) -> tuple[Workspace, str]:
    if actor.workspace_scope not in (None, workspace_id):
        raise Forbidden("This API key is bound to another workspace")
    return await workspaces.get_member_workspace(session, workspace_id, actor.user.id)


@router.get("/{workspace_id}/members", response_model=Envelope[list[MemberOut]])
async def list_members(workspace_id: str, actor: ActorDep, session: SessionDep) -> Any:
    workspace, _ = await _member_workspace(workspace_id, actor, session)
    rows = await workspaces.list_members(session, workspace.id)
    return ok([_member(membership, user) for membership, user in rows])


@router.post(
    "/{workspace_id}/members",
    response_model=Envelope[MemberOut],
    status_code=status.HTTP_201_CREATED,
)
async def add_member(
    workspace_id: str, body: MemberAdd, actor: ActorDep, session: SessionDep
) -> Any:
    workspace, role = await _member_workspace(workspace_id, actor, session)
    membership, user = await workspaces.add_member(
        session, workspace, role, email=body.email, role=body.role
    )
    return ok(_member(membership, user), "Member added")


@router.put("/{workspace_id}/members/{user_id}", response_model=Envelope[MemberOut])
async def change_member_role(
    workspace_id: str, user_id: str, body: MemberUpdate, actor: ActorDep, session: SessionDep
) -> Any:
    workspace, role = await _member_workspace(workspace_id, actor, session)
    membership, user = await workspaces.change_member_role(
        session, workspace, role, user_id, body.role
    )
    return ok(_member(membership, user), "Role changed")


@router.delete("/{workspace_id}/members/{user_id}", response_model=Envelope[None])
async def remove_member(
    workspace_id: str, user_id: str, actor: ActorDep, session: SessionDep
) -> Any:
    workspace, role = await _member_workspace(workspace_id, actor, session)
    await workspaces.remove_member(session, workspace, role, user_id)
    return ok(None, "Member removed")
