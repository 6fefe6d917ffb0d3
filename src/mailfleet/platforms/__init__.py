"""Sending-platform adapters and the CSV layouts of their bulk uploads."""

from __future__ import annotations

from typing import Final

from mailfleet.platforms.base import AccountAccess, PlatformAdapter
from mailfleet.platforms.deeplead import DeepLeadAdapter
from mailfleet.platforms.http import HttpPolicy
from mailfleet.platforms.instantly import InstantlyAdapter
from mailfleet.platforms.saleshandy import SaleshandyAdapter
from mailfleet.platforms.sendkit import SendKitAdapter
from mailfleet.platforms.smartlead import SmartleadAdapter

ADAPTERS: Final[dict[str, type[PlatformAdapter]]] = {
    adapter.name: adapter
    for adapter in (
        InstantlyAdapter,
        SmartleadAdapter,
        SaleshandyAdapter,
        SendKitAdapter,
        DeepLeadAdapter,
    )
}
PLATFORMS: Final = tuple(ADAPTERS)


def adapter_for(platform: str, access: AccountAccess, policy: HttpPolicy) -> PlatformAdapter:
    return ADAPTERS[platform](access, policy)


__all__ = ["ADAPTERS", "PLATFORMS", "adapter_for"]
