"""A thin, typed layer over dnspython's async resolver.

Every lookup answers with a `LookupResult` instead of raising, and keeps two kinds of
"no data" apart: *missing* (the name or the record type does not exist: NXDOMAIN or
an empty answer) and *unknown* (we could not find out: timeout, SERVFAIL, refused, no
reachable nameserver). Callers that report on a customer's DNS must never turn an
unknown into a missing, or a flaky resolver would tell people to fix records that are
fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from mailfleet.kit.names import ascii_name

# The resolver factory lives in kit, so the network guard can resolve through the
# configured nameservers without importing this package.
from mailfleet.kit.nameservers import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from mailfleet.kit.nameservers import make_resolver as make_resolver
from mailfleet.kit.nameservers import parse_nameserver as parse_nameserver

LookupStatus = Literal["found", "missing", "unknown"]

# Why a lookup came back without records; "" when it found some.
LookupReason = Literal["", "nxdomain", "no-answer", "timeout", "servfail", "error"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    exchange: str  # lowercase, no trailing dot; "" for a null MX ("0 .")


@dataclass(frozen=True, slots=True)
class LookupResult(Generic[T]):
    """The outcome of one query: records, or why there are none."""

    name: str
    rtype: str
    status: LookupStatus
    records: tuple[T, ...] = ()
    reason: LookupReason = ""
    error: str = ""
    # The name the records belong to after following CNAMEs.
    canonical_name: str = ""

    @property
    def found(self) -> bool:
        return self.status == "found"

    @property
    def missing(self) -> bool:
        return self.status == "missing"

    @property
    def unknown(self) -> bool:
        return self.status == "unknown"


def to_dns_name(name: str) -> dns.name.Name:
    """An absolute dnspython name; IDNA 2008 for non-ASCII labels."""
    try:
        return dns.name.from_text(name.strip(), idna_codec=dns.name.IDNA_2008_Practical)
    except dns.exception.DNSException as exc:
        raise ValueError(f"invalid domain name {name!r}: {exc}") from None


def normalize_name(name: str) -> str:
    """Lowercase ASCII (punycode) form without the trailing dot."""
    text = name.strip()
    if not text or text == ".":
        raise ValueError("empty domain name")
    try:
        ascii_form = ascii_name(text)
    except ValueError as exc:
        raise ValueError(f"invalid domain name {name!r}: {exc}") from None
    return to_dns_name(ascii_form).to_text(omit_final_dot=True).lower()


def _name_text(name: dns.name.Name) -> str:
    # The root name is "." in dnspython; "" keeps "no trailing dot" uniform, and makes a
    # null MX ("0 .") easy to spot.
    return "" if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


def _unknown_reason(exc: Exception) -> LookupReason:
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "servfail"
    return "error"


async def _query(
    resolver: dns.asyncresolver.Resolver, name: str, rtype: str
) -> tuple[LookupResult[object], dns.resolver.Answer | None]:
    qname = normalize_name(name)
    try:
        answer = await resolver.resolve(to_dns_name(qname), rtype, search=False)
    except dns.resolver.NXDOMAIN:
        return LookupResult(qname, rtype, "missing", reason="nxdomain"), None
    except dns.resolver.NoAnswer:
        return LookupResult(qname, rtype, "missing", reason="no-answer"), None
    except (dns.exception.DNSException, OSError) as exc:
        # Everything else, SERVFAIL included, says nothing about whether the record
        # exists, so it must not read as missing.
        return LookupResult(
            qname, rtype, "unknown", reason=_unknown_reason(exc), error=_describe(exc)
        ), None
    return LookupResult(
        qname, rtype, "found", canonical_name=_name_text(answer.canonical_name)
    ), answer


def _describe(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "DNS lookup timed out"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no nameserver gave a usable answer (SERVFAIL or refused)"
    return f"DNS lookup failed: {exc}"


def _with_records(result: LookupResult[object], records: tuple[T, ...]) -> LookupResult[T]:
    return LookupResult(
        name=result.name,
        rtype=result.rtype,
        status=result.status,
        records=records,
        reason=result.reason,
        error=result.error,
        canonical_name=result.canonical_name,
    )


async def lookup_txt(resolver: dns.asyncresolver.Resolver, name: str) -> LookupResult[str]:
    """TXT records, each with its character-strings joined without separators.

    SPF (RFC 7208 3.3), DKIM (RFC 6376 3.6.2.2) and DMARC all read a multi-string
    TXT record as the plain concatenation, which is how keys over 255 bytes are stored.
    """
    result, answer = await _query(resolver, name, "TXT")
    if answer is None:
        return _with_records(result, ())
    texts: list[str] = []
    for rdata in answer:
        strings: tuple[bytes, ...] = rdata.strings
        texts.append(b"".join(strings).decode("utf-8", errors="replace"))
    return _with_records(result, tuple(texts))


async def lookup_mx(resolver: dns.asyncresolver.Resolver, name: str) -> LookupResult[MxRecord]:
    """MX records sorted by preference, then exchange."""
    result, answer = await _query(resolver, name, "MX")
    if answer is None:
        return _with_records(result, ())
    records = sorted(
        (
            MxRecord(
                preference=int(rdata.preference),
                exchange=_name_text(rdata.exchange),
            )
            for rdata in answer
        ),
        key=lambda record: (record.preference, record.exchange),
    )
    return _with_records(result, tuple(records))


async def lookup_addresses(
    resolver: dns.asyncresolver.Resolver, name: str, rtype: Literal["A", "AAAA"] = "A"
) -> LookupResult[str]:
    """A or AAAA records as address strings."""
    result, answer = await _query(resolver, name, rtype)
    if answer is None:
        return _with_records(result, ())
    return _with_records(result, tuple(sorted(rdata.address for rdata in answer)))


async def lookup_cname(resolver: dns.asyncresolver.Resolver, name: str) -> LookupResult[str]:
    """The CNAME target of a name, if it has one."""
    result, answer = await _query(resolver, name, "CNAME")
    if answer is None:
        return _with_records(result, ())
    return _with_records(result, tuple(_name_text(rdata.target) for rdata in answer))
