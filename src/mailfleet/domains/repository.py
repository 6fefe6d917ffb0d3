"""Domain, DNS record and check history look-ups."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.kit.repository import Repository
from mailfleet.models import DkimKey, DnsRecord, Domain, DomainDnsCheck


class DomainRepository(Repository[Domain], model=Domain, noun="Domain"): ...


class DnsRecordRepository(
    Repository[DnsRecord], model=DnsRecord, noun="DNS record", owner="domain_id"
): ...


class DnsCheckRepository(
    Repository[DomainDnsCheck], model=DomainDnsCheck, noun="DNS check", owner="domain_id"
): ...


async def dkim_keys(session: AsyncSession, domain_id: str) -> list[DkimKey]:
    return list(
        await session.scalars(
            select(DkimKey).where(DkimKey.domain_id == domain_id).order_by(DkimKey.created_at)
        )
    )
