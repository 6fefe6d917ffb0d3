"""All tables, imported here so Alembic and `Base.metadata` see every one."""

from mailfleet.models.accounts import ApiKey, User
from mailfleet.models.workspaces import ROLES, Membership, Workspace

# Every column that holds keyring ciphertext, as (model, attribute): what
# `mailfleet keys rotate` re-encrypts. A model with a secret adds its column here.
ENCRYPTED_COLUMNS: list[tuple[type, str]] = []

__all__ = ["ENCRYPTED_COLUMNS", "ROLES", "ApiKey", "Membership", "User", "Workspace"]
