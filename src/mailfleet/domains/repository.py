"""Domain, DNS record and check history look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import DnsRecord, Domain, DomainDnsCheck


class DomainRepository(Repository[Domain], model=Domain, noun="Domain"): ...


class DnsRecordRepository(
    Repository[DnsRecord], model=DnsRecord, noun="DNS record", owner="domain_id"
): ...


class DnsCheckRepository(
    Repository[DomainDnsCheck], model=DomainDnsCheck, noun="DNS check", owner="domain_id"
): ...
