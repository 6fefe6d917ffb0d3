"""DNS provider backends behind one interface (`base.DnsProvider`)."""

from mailfleet.dns.providers.base import (
    Applied,
    DnsProvider,
    DnsProviderError,
    DnsProviderRejected,
    ExistingRecord,
    OpenedZone,
    RecordChange,
    ZoneRef,
    inverse,
)

__all__ = [
    "Applied",
    "DnsProvider",
    "DnsProviderError",
    "DnsProviderRejected",
    "ExistingRecord",
    "OpenedZone",
    "RecordChange",
    "ZoneRef",
    "inverse",
]
