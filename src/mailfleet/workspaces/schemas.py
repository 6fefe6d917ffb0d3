from __future__ import annotations

from typing import Literal

from pydantic import Field

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import EmailAddress


class WorkspaceCreate(ApiModel):
    model_config = example({"name": "Agency A", "description": "Outbound for clients"})

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)


class WorkspaceUpdate(ApiModel):
    model_config = example({"name": "Agency A (EU)"})

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
    model_config = example({"email": "ben@example.com", "role": "member"})

    email: EmailAddress
    role: MemberRole = "member"


class MemberUpdate(ApiModel):
    model_config = example({"role": "admin"})

    role: MemberRole


class MemberOut(ApiOut):
    user_id: str
    email: str
    role: str
    created_at: Timestamp
