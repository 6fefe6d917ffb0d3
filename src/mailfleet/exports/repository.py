"""Platform account and export history look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import ExportHistory, PlatformAccount


class PlatformAccountRepository(
    Repository[PlatformAccount], model=PlatformAccount, noun="Platform account"
): ...


class ExportHistoryRepository(Repository[ExportHistory], model=ExportHistory, noun="Export"): ...
