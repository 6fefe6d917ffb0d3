from __future__ import annotations

from typing import Literal

from pydantic import Field

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp
from mailfleet.kit.validation import EmailAddress


class WorkspaceCreate(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)


class WorkspaceUpdate(ApiModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)


class WorkspaceOut(ApiOut):
    id: str
    name: str
    description: str
    owner_id: str
    role: str = Field(description="The caller's role: owner, admin, member or viewer")
    created_at: Timestamp
    updated_at: Timestamp


MemberRole = Literal["admin", "member", "viewer"]


class MemberAdd(ApiModel):
    email: EmailAddress
    role: MemberRole = "member"


class MemberUpdate(ApiModel):
    role: MemberRole


class MemberOut(ApiOut):
    user_id: str
    email: str
    role: str
    created_at: Timestamp
