from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from mailfleet.deps import (
    ActorDep,
    SessionDep,
    UserActorDep,
    WorkspaceContext,
    workspace_permission,
)
from mailfleet.kit.envelope import AUTH_ERRORS, WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
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

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"])

# The workspace is the one in the path: members read it, owners and admins manage it.
MemberDep = Annotated[WorkspaceContext, Depends(workspace_permission("read", in_path=True))]
ManagerDep = Annotated[WorkspaceContext, Depends(workspace_permission("manage", in_path=True))]


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


@router.get("", operation_id="workspaces:list", responses=errors(401))
async def list_workspaces(
    actor: ActorDep, session: SessionDep, page: PageDep
) -> ListEnvelope[WorkspaceOut]:
    rows, total = await workspaces.list_member_workspaces(
        session, actor.user.id, page, only_id=actor.workspace_scope
    )
    return ListEnvelope(
        data=[_out(workspace, role) for workspace, role in rows], pagination=page.describe(total)
    )


@router.post(
    "", operation_id="workspaces:create", status_code=status.HTTP_201_CREATED, responses=AUTH_ERRORS
)
async def create_workspace(
    body: WorkspaceCreate, actor: UserActorDep, session: SessionDep
) -> Envelope[WorkspaceOut]:
    workspace = await workspaces.create_workspace(
        session, actor.user, name=body.name, description=body.description
    )
    return ok(_out(workspace, "owner"), "Workspace created")


@router.put("/{workspace_id}", operation_id="workspaces:update", responses=WORKSPACE_ERRORS)
async def update_workspace(
    workspace_id: str, body: WorkspaceUpdate, ctx: ManagerDep, session: SessionDep
) -> Envelope[WorkspaceOut]:
    workspace = await workspaces.update_workspace(
        session, ctx.workspace, ctx.role, name=body.name, description=body.description
    )
    return ok(_out(workspace, ctx.role), "Workspace updated")


def _member(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id, email=user.email, role=membership.role, created_at=membership.created_at
    )


@router.get(
    "/{workspace_id}/members", operation_id="workspaces.members:list", responses=WORKSPACE_ERRORS
)
async def list_members(
    workspace_id: str, ctx: MemberDep, session: SessionDep
) -> Envelope[list[MemberOut]]:
    rows = await workspaces.list_members(session, ctx.workspace_id)
    return ok([_member(membership, user) for membership, user in rows])


@router.post(
    "/{workspace_id}/members",
    operation_id="workspaces.members:add",
    status_code=status.HTTP_201_CREATED,
    responses={**WORKSPACE_ERRORS, **errors(409)},
)
async def add_member(
    workspace_id: str, body: MemberAdd, ctx: ManagerDep, session: SessionDep
) -> Envelope[MemberOut]:
    membership, user = await workspaces.add_member(
        session, ctx.workspace, ctx.role, email=body.email, role=body.role
    )
    return ok(_member(membership, user), "Member added")


@router.put(
    "/{workspace_id}/members/{user_id}",
    operation_id="workspaces.members:change_role",
    responses=WORKSPACE_ERRORS,
)
async def change_member_role(
    workspace_id: str, user_id: str, body: MemberUpdate, ctx: ManagerDep, session: SessionDep
) -> Envelope[MemberOut]:
    membership, user = await workspaces.change_member_role(
        session, ctx.workspace, ctx.role, user_id, body.role
    )
    return ok(_member(membership, user), "Role changed")


@router.delete(
    "/{workspace_id}/members/{user_id}",
    operation_id="workspaces.members:remove",
    responses=WORKSPACE_ERRORS,
)
async def remove_member(
    workspace_id: str, user_id: str, ctx: ManagerDep, session: SessionDep
) -> Envelope[None]:
    await workspaces.remove_member(session, ctx.workspace, ctx.role, user_id)
    return ok(None, "Member removed")
