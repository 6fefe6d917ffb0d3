"""API key look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import ApiKey


class ApiKeyRepository(Repository[ApiKey], model=ApiKey, noun="API key", owner="user_id"): ...
