from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import EmailAddress

# A password a user chooses (signing up or changing it); one they sign in with may be
# any length, so a rule tightened later does not lock anyone out.
NewPassword = Annotated[str, Field(min_length=8, max_length=1024)]


class LoginRequest(ApiModel):
    model_config = example({"email": "ana@example.com", "password": "correct horse battery staple"})

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class LoginResult(ApiOut):
    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (a scheme name)
    expires_at: Timestamp


class ApiKeyCreate(ApiModel):
    model_config = example({"name": "CI deploys", "scope": "workspace"})

    name: str = Field(default="", max_length=200)
    scope: Literal["user", "workspace"] = "user"
    workspace_id: str | None = Field(
        default=None,
        description="For workspace keys; default: the workspace named by x-workspace-id "
        "or the user's default workspace",
    )


class ApiKeyOut(ApiOut):
    id: str
    name: str
    scope: str
    display_prefix: str = Field(description="The key's first characters, to tell keys apart")
    workspace_id: str | None
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; shown once, store it now")


class UserOut(ApiOut):
    id: str
    email: str
    name: str
    default_workspace_id: str | None
    is_superuser: bool
    created_at: Timestamp
    updated_at: Timestamp


class UserCreate(ApiModel):
    model_config = example(
        {"email": "ben@example.com", "password": "a long password", "name": "Ben"}
    )

    email: EmailAddress
    password: NewPassword
    name: str = Field(default="", max_length=200)


class PasswordChange(ApiModel):
    model_config = example(
        {"currentPassword": "correct horse battery staple", "newPassword": "a longer passphrase"}
    )

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: NewPassword
