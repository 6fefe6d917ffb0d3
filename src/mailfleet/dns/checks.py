"""DNS checks of a sending domain: MX, SPF, DKIM and DMARC.

Each check takes a resolver (see `mailfleet.dns.resolver.make_resolver`) and returns a
`RecordCheck`; `check_domain` runs all four at once. The functions keep no state, so
the mailbox setup status and the domains feature can share them.

Statuses: "pass" (nothing to do), "warn" (works, but should be improved), "fail"
(broken or missing), "unknown" (DNS did not answer; says nothing about the records).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import ipaddress
import re
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar, cast

import dns.asyncresolver
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from mailfleet.dns.resolver import (
    LookupResult,
    MxRecord,
    lookup_addresses,
    lookup_mx,
    lookup_txt,
    normalize_name,
)
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.names import registrable_domain

CheckStatus = Literal["pass", "warn", "fail", "unknown"]
CheckName = Literal["mx", "spf", "dkim", "dmarc"]

_T = TypeVar("_T")

# A failure is something to fix, so it outranks "unknown", which only says we could
# not look; an unknown still outranks a warning, because it may hide a failure.
_SEVERITY: dict[CheckStatus, int] = {"pass": 0, "warn": 1, "unknown": 2, "fail": 3}

SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
SPF_VOID_LOOKUP_LIMIT = 2  # RFC 7208 4.6.4
# Past the limit the count only feeds a message, so stop following includes at some
# point rather than let a hostile record make us send hundreds of queries.
_SPF_FOLLOW_LIMIT = 40

DEFAULT_DKIM_SELECTORS: dict[str, list[str]] = {
    "google": ["google"],
    "microsoft": ["selector1", "selector2"],
    "zoho": ["zoho", "zmail"],
    "namecheap": ["default"],
    "custom": [
        "default",
        "mail",
        "dkim",
        "s1",
        "s2",
        "k1",
        "selector1",
        "selector2",
        "google",
        "zoho",
        "zmail",
    ],
}


def worst_status(statuses: Iterable[CheckStatus]) -> CheckStatus:
    """The most severe status, by fail > unknown > warn > pass."""
    worst: CheckStatus = "pass"
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status
    return worst


@dataclass(frozen=True)
class RecordCheck:
    name: CheckName
    status: CheckStatus
    message: str
    found: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "found": list(self.found),
            "details": copy.deepcopy(self.details),
        }


@dataclass(frozen=True)
class DomainCheck:
    domain: str
    checked_at: datetime
    mx: RecordCheck
    spf: RecordCheck
    dkim: RecordCheck
    dmarc: RecordCheck

    @property
    def checks(self) -> tuple[RecordCheck, RecordCheck, RecordCheck, RecordCheck]:
        return (self.mx, self.spf, self.dkim, self.dmarc)

    @property
    def overall(self) -> CheckStatus:
        return worst_status(check.status for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "checkedAt": isoformat(self.checked_at),
            "overall": self.overall,
            "mx": self.mx.to_dict(),
            "spf": self.spf.to_dict(),
            "dkim": self.dkim.to_dict(),
            "dmarc": self.dmarc.to_dict(),
        }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _unknown(name: CheckName, what: str, result: LookupResult[_T]) -> RecordCheck:
    return RecordCheck(
        name=name,
        status="unknown",
        message=f"Could not look up {what}: {result.error or 'no answer'}.",
        details={"queried": result.name, "reason": result.reason},
    )


# --------------------------------------------------------------------------- MX


async def check_mx(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    expected_hosts: list[str] | None = None,
) -> RecordCheck:
    """Pass when the domain has MX records and, if given, every expected host is one."""
    domain = normalize_name(domain)
    expected = [normalize_name(host) for host in expected_hosts or []]
    result = await lookup_mx(resolver, domain)
    if result.unknown:
        return _unknown("mx", f"the MX records of {domain}", result)
    if result.missing:
        message = (
            f"{domain} does not exist in DNS."
            if result.reason == "nxdomain"
            else f"{domain} has no MX records."
        )
        return RecordCheck("mx", "fail", message, details={"records": [], "reason": result.reason})

    records = list(result.records)
    found = [f"{record.preference} {record.exchange or '.'}" for record in records]
    details: dict[str, object] = {
        "records": [{"preference": r.preference, "exchange": r.exchange} for r in records]
    }
    if any(record.exchange == "" for record in records):
        # RFC 7505: a null MX says the domain accepts no mail at all.
        message = (
            f"{domain} publishes a null MX: it declares that it accepts no mail."
            if len(records) == 1
            else f"{domain} mixes a null MX with other MX records, which RFC 7505 forbids."
        )
        return RecordCheck("mx", "fail", message, found, details)

    if expected:
        hosts = {record.exchange for record in records}
        missing = [host for host in expected if host not in hosts]
        details["expectedHosts"] = expected
        details["missingHosts"] = missing
        if missing:
            return RecordCheck(
                "mx",
                "warn",
                f"{domain} has MX records, but not the expected {', '.join(missing)}.",
                found,
                details,
            )
        return RecordCheck("mx", "pass", f"{domain} has all expected MX records.", found, details)
    return RecordCheck(
        "mx", "pass", f"{domain} has {_plural(len(records), 'MX record')}.", found, details
    )


# -------------------------------------------------------------------------- SPF

SpfQualifier = Literal["+", "-", "~", "?"]
AddressType = Literal["A", "AAAA"]

_SPF_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
_SPF_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_MODIFIER_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.DOTALL)
_DUAL_CIDR_RE = re.compile(r"(?::(?P<domain>.*?))?(?:/(?P<v4>[0-9]+))?(?://(?P<v6>[0-9]+))?")
_MACRO_RE = re.compile(
    r"%(?:\{(?P<letter>[A-Za-z])(?P<digits>[0-9]*)(?P<r>[rR]?)(?P<delims>[.\-+,/_=]*)\}|[%_-])"
)
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?")
_TOPLABEL_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class SpfTerm:
    """One directive (qualifier + mechanism) or modifier of an SPF record."""

    kind: Literal["mechanism", "modifier"]
    name: str  # lowercase mechanism or modifier name
    qualifier: SpfQualifier = "+"
    # The domain-spec, address or modifier value; "" when the term has none.
    value: str = ""
    text: str = ""

    @property
    def target_has_macros(self) -> bool:
        return "%" in self.value


@dataclass(frozen=True, slots=True)
class SpfRecord:
    text: str
    terms: tuple[SpfTerm, ...]
    errors: tuple[str, ...]

    @property
    def all_term(self) -> SpfTerm | None:
        return next((t for t in self.terms if t.kind == "mechanism" and t.name == "all"), None)

    def modifier(self, name: str) -> SpfTerm | None:
        return next((t for t in self.terms if t.kind == "modifier" and t.name == name), None)


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF record: "v=spf1" then a space or the end."""
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def _macro_error(text: str, *, allow_exp_letters: bool = False) -> str | None:
    """RFC 7208 7.1 macro-string syntax; None when valid."""
    letters = "slodiphcrtv" if allow_exp_letters else "slodiphv"
    position = 0
    while True:
        percent = text.find("%", position)
        if percent == -1:
            return None
        match = _MACRO_RE.match(text, percent)
        if match is None:
            return f"invalid macro at {text[percent : percent + 6]!r}"
        letter = match.group("letter")
        if letter is not None and letter.lower() not in letters:
            return f"macro letter {letter!r} is not allowed here"
        position = match.end()


def _domain_spec_error(spec: str) -> str | None:
    """Syntax of an SPF domain-spec; None when valid."""
    if not spec:
        return "empty domain"
    macro_problem = _macro_error(spec)
    if macro_problem:
        return macro_problem
    if "%" in spec:
        # Expanded at evaluation time; only the macro syntax can be checked statically.
        return None
    name = spec[:-1] if spec.endswith(".") else spec
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253:
        return f"{spec!r} is not a valid domain"
    for label in labels:
        if len(label) > 63 or not _LABEL_RE.fullmatch(label):
            return f"{spec!r} is not a valid domain"
    if not _TOPLABEL_RE.fullmatch(labels[-1]):
        return f"{spec!r} is not a valid domain"
    return None


def _parse_cidr(text: str | None, maximum: int) -> str | None:
    if text is None:
        return None
    if int(text) > maximum or (len(text) > 1 and text.startswith("0")):
        return f"prefix length /{text} is invalid"
    return None


def _parse_mechanism(token: str) -> tuple[SpfTerm | None, str | None]:
    qualifier: SpfQualifier = "+"
    body = token
    if body[0] in "+-~?":
        qualifier = cast(SpfQualifier, body[0])
        body = body[1:]
    name_match = re.match(r"[A-Za-z0-9]*", body)
    name = name_match.group(0).lower() if name_match else ""
    rest = body[len(name) :]
    if name not in _SPF_MECHANISMS:
        return None, f"unknown mechanism {token!r}"

    value = ""
    if name == "all":
        if rest:
            return None, f"{token!r}: 'all' takes no argument"
    elif name in ("include", "exists"):
        if not rest.startswith(":"):
            return None, f"{token!r}: {name} needs ':domain'"
        value = rest[1:]
        problem = _domain_spec_error(value)
        if problem:
            return None, f"{token!r}: {problem}"
    elif name in ("a", "mx", "ptr"):
        cidr = _DUAL_CIDR_RE.fullmatch(rest)
        if cidr is None:
            return None, f"{token!r}: invalid syntax"
        domain = cidr.group("domain")
        if domain is not None:
            problem = _domain_spec_error(domain)
            if problem:
                return None, f"{token!r}: {problem}"
            value = domain
        if name == "ptr" and (cidr.group("v4") or cidr.group("v6")):
            return None, f"{token!r}: ptr takes no prefix length"
        problem = _parse_cidr(cidr.group("v4"), 32) or _parse_cidr(cidr.group("v6"), 128)
        if problem:
            return None, f"{token!r}: {problem}"
    else:  # ip4 / ip6
        if not rest.startswith(":"):
            return None, f"{token!r}: {name} needs ':address'"
        value = rest[1:]
        address, _, prefix = value.partition("/")
        version = 4 if name == "ip4" else 6
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return None, f"{token!r}: {address!r} is not an IPv{version} address"
        if parsed.version != version:
            return None, f"{token!r}: {address!r} is not an IPv{version} address"
        if "/" in value:
            if not prefix.isdigit():
                return None, f"{token!r}: invalid prefix length"
            problem = _parse_cidr(prefix, 32 if version == 4 else 128)
            if problem:
                return None, f"{token!r}: {problem}"
    return SpfTerm("mechanism", name, qualifier, value, token), None


def parse_spf(text: str) -> SpfRecord:
    """Parse and syntax-check one SPF record (RFC 7208 4.6, 5, 6, 7)."""
    tokens = text.split()
    errors: list[str] = []
    terms: list[SpfTerm] = []
    if not tokens or tokens[0].lower() != "v=spf1":
        return SpfRecord(text, (), ("record does not start with v=spf1",))
    seen_modifiers: set[str] = set()
    for token in tokens[1:]:
        modifier = _MODIFIER_RE.fullmatch(token)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if name in seen_modifiers:
                    errors.append(f"{name}= appears more than once")
                    continue
                seen_modifiers.add(name)
                problem = _domain_spec_error(value)
                if problem:
                    errors.append(f"{token!r}: {problem}")
                    continue
            else:
                # Unknown modifiers are legal and ignored (RFC 7208 6), but their value
                # must still be a valid macro-string.
                problem = _macro_error(value, allow_exp_letters=True)
                if problem:
                    errors.append(f"{token!r}: {problem}")
                    continue
            terms.append(SpfTerm("modifier", name, "+", value, token))
            continue
        term, problem = _parse_mechanism(token)
        if problem:
            errors.append(problem)
        elif term:
            terms.append(term)
    return SpfRecord(text, tuple(terms), tuple(errors))


def _select_spf(texts: Sequence[str]) -> list[str]:
    return [text for text in texts if is_spf_record(text)]


class _SpfEvaluation:
    """Walks an SPF record and everything it includes, counting DNS lookups.

    The count is the worst case: a real evaluation stops at the first matching
    mechanism, but a record is only safe if every path stays within the limits.
    """

    def __init__(
        self,
        resolver: dns.asyncresolver.Resolver,
        known_txt: dict[str, LookupResult[str]] | None = None,
    ) -> None:
        self.resolver = resolver
        self.lookups = 0
        self.void_lookups = 0
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.unresolved: list[str] = []
        self.unevaluated: list[str] = []
        self.records: dict[str, str] = {}
        self.truncated = False
        self._txt: dict[str, LookupResult[str]] = dict(known_txt or {})
        self._addresses: dict[tuple[str, AddressType], LookupResult[str]] = {}
        self._mx: dict[str, LookupResult[MxRecord]] = {}

    async def _prefetch(self, domain: str, record: SpfRecord, chain: tuple[str, ...]) -> None:
        """Query everything this record's terms need at once: one round trip per level."""
        has_all = record.all_term is not None
        jobs: list[Awaitable[object]] = []
        wanted_txt: set[str] = set()
        wanted_addresses: set[tuple[str, AddressType]] = set()
        wanted_mx: set[str] = set()
        for term in record.terms:
            if term.target_has_macros:
                continue
            target = _term_target(term, domain)
            if target in chain and term.name in ("include", "redirect"):
                continue  # a loop: reported, never queried
            if term.name == "include" or (term.name == "redirect" and not has_all):
                wanted_txt.add(target)
            elif term.name == "a":
                wanted_addresses.update({(target, "A"), (target, "AAAA")})
            elif term.name == "exists":
                wanted_addresses.add((target, "A"))
            elif term.name == "mx":
                wanted_mx.add(target)
        jobs.extend(self._fetch_txt(name) for name in wanted_txt if name not in self._txt)
        jobs.extend(
            self._fetch_addresses(name, rtype)
            for name, rtype in wanted_addresses
            if (name, rtype) not in self._addresses
        )
        jobs.extend(self._fetch_mx(name) for name in wanted_mx if name not in self._mx)
        if jobs:
            await asyncio.gather(*jobs)

    async def _fetch_txt(self, name: str) -> LookupResult[str]:
        if name not in self._txt:
            self._txt[name] = await lookup_txt(self.resolver, name)
        return self._txt[name]

    async def _fetch_addresses(self, name: str, rtype: AddressType) -> LookupResult[str]:
        key = (name, rtype)
        if key not in self._addresses:
            self._addresses[key] = await lookup_addresses(self.resolver, name, rtype)
        return self._addresses[key]

    async def _fetch_mx(self, name: str) -> LookupResult[MxRecord]:
        if name not in self._mx:
            self._mx[name] = await lookup_mx(self.resolver, name)
        return self._mx[name]

    async def evaluate(
        self, domain: str, record: SpfRecord, chain: tuple[str, ...]
    ) -> SpfTerm | None:
        """Count this record's lookups and follow its includes and redirect.

        Returns the "all" that ends evaluation of this record, following a redirect.
        """
        self.records[domain] = record.text
        prefix = "" if len(chain) == 1 else f"{domain}: "
        self.errors.extend(f"{prefix}{error}" for error in record.errors)
        await self._prefetch(domain, record, chain)

        all_term = record.all_term
        after_all = False
        for term in record.terms:
            if term.kind == "modifier":
                continue
            if after_all:
                self.warnings.append(f"{prefix}terms after 'all' are never evaluated")
                after_all = False
            if term.name == "all":
                after_all = True
            if term.name not in _SPF_LOOKUP_TERMS:
                continue
            self.lookups += 1
            if term.target_has_macros:
                self.unevaluated.append(term.text)
                continue
            target = _term_target(term, domain)
            if term.name == "include":
                included_all = await self._follow(term, target, chain, prefix, "include")
                if included_all is not None and included_all.qualifier == "+":
                    # An include matches when its record passes, and +all always does.
                    self.warnings.append(
                        f"{prefix}{term.text!r} ends in '{included_all.text}', "
                        "so it lets any server send"
                    )
            elif term.name == "a":
                v4 = await self._fetch_addresses(target, "A")
                v6 = await self._fetch_addresses(target, "AAAA")
                if v4.missing and v6.missing:
                    self.void_lookups += 1
                elif not (v4.found or v6.found):
                    self.unresolved.append(f"{term.text}: {v4.error or v6.error}")
            elif term.name == "mx":
                mx = await self._fetch_mx(target)
                if mx.missing:
                    self.void_lookups += 1
                elif mx.unknown:
                    self.unresolved.append(f"{term.text}: {mx.error}")
                elif len(mx.records) > 10:
                    self.errors.append(
                        f"{prefix}{term.text!r}: {target} has more than 10 MX records"
                    )
            elif term.name == "exists":
                exists = await self._fetch_addresses(target, "A")
                if exists.missing:
                    self.void_lookups += 1
                elif exists.unknown:
                    self.unresolved.append(f"{term.text}: {exists.error}")
            elif term.name == "ptr":
                self.warnings.append(f"{prefix}the ptr mechanism is deprecated (RFC 7208 5.5)")

        redirect = record.modifier("redirect")
        if redirect is None:
            return all_term
        if all_term is not None:
            self.warnings.append(f"{prefix}redirect= is ignored because the record has 'all'")
            return all_term
        self.lookups += 1
        if redirect.target_has_macros:
            self.unevaluated.append(redirect.text)
            return None
        target = _term_target(redirect, domain)
        return await self._follow(redirect, target, chain, prefix, "redirect")

    async def _follow(
        self,
        term: SpfTerm,
        target: str,
        chain: tuple[str, ...],
        prefix: str,
        kind: Literal["include", "redirect"],
    ) -> SpfTerm | None:
        if target in chain:
            self.errors.append(f"{kind} loop: {' -> '.join((*chain, target))}")
            return None
        if self.lookups > _SPF_FOLLOW_LIMIT:
            self.truncated = True
            return None
        result = await self._fetch_txt(target)
        if result.unknown:
            self.unresolved.append(f"{term.text}: {result.error}")
            return None
        spf = _select_spf(result.records)
        if result.missing:
            self.void_lookups += 1
        if not spf:
            self.errors.append(f"{prefix}{term.text!r}: {target} has no SPF record")
            return None
        if len(spf) > 1:
            self.errors.append(f"{prefix}{term.text!r}: {target} has multiple SPF records")
            return None
        return await self.evaluate(target, parse_spf(spf[0]), (*chain, target))


def _term_target(term: SpfTerm, domain: str) -> str:
    """The domain a term queries: its own domain-spec, or the current domain."""
    return (term.value or domain).rstrip(".").lower()


def _includes_target(records: dict[str, str], required: str) -> bool:
    for text in records.values():
        for term in parse_spf(text).terms:
            if term.name in ("include", "redirect") and term.value.rstrip(".").lower() == required:
                return True
    return False


async def check_spf(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    *,
    required_include: str | None = None,
) -> RecordCheck:
    """Validate the SPF record and its DNS lookup budget (RFC 7208).

    `required_include` (e.g. "_spf.google.com") must appear as an include or redirect
    anywhere in the evaluated tree, or the check fails: mail sent through that
    provider would not pass SPF.
    """
    domain = normalize_name(domain)
    required = normalize_name(required_include) if required_include else None
    result = await lookup_txt(resolver, domain)
    if result.unknown:
        return _unknown("spf", f"the TXT records of {domain}", result)
    spf_records = _select_spf(result.records)
    if result.missing and result.reason == "nxdomain":
        return RecordCheck("spf", "fail", f"{domain} does not exist in DNS.")
    if not spf_records:
        return RecordCheck("spf", "fail", f"{domain} has no SPF record.")
    if len(spf_records) > 1:
        return RecordCheck(
            "spf",
            "fail",
            f"{domain} has multiple SPF records; receivers treat that as an error. "
            "Merge them into one.",
            spf_records,
            {"recordCount": len(spf_records)},
        )

    record = parse_spf(spf_records[0])
    evaluation = _SpfEvaluation(resolver, known_txt={domain: result})
    final_all = await evaluation.evaluate(domain, record, (domain,))

    problems: list[str] = []
    if evaluation.lookups > SPF_LOOKUP_LIMIT:
        at_least = "at least " if evaluation.truncated or evaluation.unresolved else ""
        problems.append(
            f"the SPF record needs {at_least}{evaluation.lookups} DNS lookups, "
            f"more than the limit of {SPF_LOOKUP_LIMIT}"
        )
    if evaluation.void_lookups > SPF_VOID_LOOKUP_LIMIT:
        problems.append(
            f"the SPF record causes {evaluation.void_lookups} void DNS lookups, "
            f"more than the limit of {SPF_VOID_LOOKUP_LIMIT}"
        )
    problems.extend(evaluation.errors)
    if required and not _includes_target(evaluation.records, required):
        problems.append(f"the SPF record does not include {required}")

    warnings = list(dict.fromkeys(evaluation.warnings))
    if final_all is None:
        if not evaluation.unevaluated:
            warnings.append(
                "the SPF record has no 'all' mechanism, so unlisted senders are neutral"
            )
    elif final_all.qualifier == "+":
        warnings.append(f"'{final_all.text}' lets any server send mail as {domain}")
    elif final_all.qualifier == "?":
        warnings.append("'?all' is neutral and gives no protection; use '~all' or '-all'")

    details: dict[str, object] = {
        "record": record.text,
        "lookupCount": evaluation.lookups,
        "lookupLimit": SPF_LOOKUP_LIMIT,
        "voidLookupCount": evaluation.void_lookups,
        "voidLookupLimit": SPF_VOID_LOOKUP_LIMIT,
        "all": final_all.text if final_all else None,
        "records": dict(evaluation.records),
        "errors": problems,
        "warnings": warnings,
        "unresolved": list(evaluation.unresolved),
        # Terms with macros depend on the sender, so they are counted but not followed;
        # they are normal (e.g. exists:%{i}...), so only listed, not warned about.
        "unevaluated": list(evaluation.unevaluated),
    }
    if required:
        details["requiredInclude"] = required
    found = [record.text]

    if problems:
        return RecordCheck(
            "spf", "fail", _sentence("SPF is broken: " + "; ".join(problems)), found, details
        )
    if evaluation.unresolved:
        return RecordCheck(
            "spf",
            "unknown",
            _sentence(
                "Could not evaluate the whole SPF record: " + "; ".join(evaluation.unresolved)
            ),
            found,
            details,
        )
    if warnings:
        return RecordCheck(
            "spf", "warn", _sentence("SPF works, but " + "; ".join(warnings)), found, details
        )
    return RecordCheck(
        "spf",
        "pass",
        f"SPF record is valid and uses {evaluation.lookups} of {SPF_LOOKUP_LIMIT} DNS lookups.",
        found,
        details,
    )


def _sentence(text: str) -> str:
    return text if text.endswith(".") else text + "."


# ------------------------------------------------------------------ tag lists


def parse_tags(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse a DKIM/DMARC tag list ("a=1; b=2;") into tags and syntax errors.

    Whitespace around names and values is dropped; a repeated tag is an error
    (RFC 6376 3.2) and keeps its first value.
    """
    tags: dict[str, str] = {}
    errors: list[str] = []
    for part in text.split(";"):
        spec = part.strip()
        if not spec:
            continue
        name, equals, value = spec.partition("=")
        name = name.strip()
        if not equals or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            errors.append(f"malformed tag {spec!r}")
            continue
        if name in tags:
            errors.append(f"tag {name!r} appears more than once")
            continue
        tags[name] = value.strip()
    return tags, errors


# ------------------------------------------------------------------------- DKIM


@dataclass(frozen=True, slots=True)
class DkimKey:
    """What one DKIM key record holds, and whether a verifier could use it."""

    valid: bool
    key_type: str = ""
    key_bytes: bytes = b""
    key_bits: int = 0
    revoked: bool = False
    testing: bool = False
    problem: str = ""


def _decode_base64(value: str) -> bytes | None:
    compact = re.sub(r"\s+", "", value)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _rsa_key_bits(der: bytes) -> int | None:
    # DKIM specifies PKCS#1 RSAPublicKey but everyone publishes SubjectPublicKeyInfo;
    # verifiers accept both, so do we.
    try:
        key = load_der_public_key(der)
    except ValueError:
        pem = (
            b"-----BEGIN RSA PUBLIC KEY-----\n"
            + base64.encodebytes(der)
            + b"-----END RSA PUBLIC KEY-----\n"
        )
        try:
            key = load_pem_public_key(pem)
        except ValueError:
            return None
    if not isinstance(key, rsa.RSAPublicKey):
        return None
    return key.key_size


def parse_dkim_key(text: str) -> DkimKey:
    """Check one DKIM key record (RFC 6376 3.6.1, RFC 8301, RFC 8463)."""
    tags, errors = parse_tags(text)
    if errors:
        return DkimKey(False, problem="; ".join(errors))
    if "v" in tags and (next(iter(tags)) != "v" or tags["v"] != "DKIM1"):
        return DkimKey(False, problem="v= must be the first tag and equal DKIM1")
    key_type = tags.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        return DkimKey(False, key_type, problem=f"unsupported key type k={key_type}")
    if "p" not in tags:
        return DkimKey(False, key_type, problem="no p= tag (public key)")
    services = {s.strip() for s in tags.get("s", "*").split(":")}
    if not services & {"*", "email"}:
        return DkimKey(False, key_type, problem="s= does not allow email")
    hashes = {h.strip().lower() for h in tags.get("h", "sha256").split(":")}
    if "sha256" not in hashes:
        return DkimKey(False, key_type, problem="h= does not allow sha256 (RFC 8301)")
    testing = "y" in {flag.strip() for flag in tags.get("t", "").split(":")}
    if not re.sub(r"\s+", "", tags["p"]):
        return DkimKey(
            False, key_type, revoked=True, testing=testing, problem="the key is revoked (empty p=)"
        )
    key_bytes = _decode_base64(tags["p"])
    if key_bytes is None:
        return DkimKey(False, key_type, testing=testing, problem="p= is not valid base64")
    if key_type == "ed25519":
        if len(key_bytes) != 32:
            return DkimKey(
                False,
                key_type,
                key_bytes,
                testing=testing,
                problem="p= is not a 32-byte Ed25519 key",
            )
        return DkimKey(True, key_type, key_bytes, 256, testing=testing)
    bits = _rsa_key_bits(key_bytes)
    if bits is None:
        return DkimKey(
            False, key_type, key_bytes, testing=testing, problem="p= is not an RSA public key"
        )
    if bits < 1024:
        return DkimKey(
            False,
            key_type,
            key_bytes,
            bits,
            testing=testing,
            problem=f"{bits}-bit RSA keys are rejected by verifiers (RFC 8301)",
        )
    return DkimKey(True, key_type, key_bytes, bits, testing=testing)


def _expected_key_bytes(expected: str) -> bytes:
    """Accept the key as bare base64, PEM, or a whole DKIM record."""
    text = expected.strip()
    if "p=" in text and ";" in text:
        tags, _ = parse_tags(text)
        text = tags.get("p", "")
    text = re.sub(r"-----(BEGIN|END) [A-Z ]+-----", "", text)
    decoded = _decode_base64(text)
    if not decoded:
        raise ValueError("expected_public_key is not a base64 public key")
    return decoded


async def check_dkim(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    selectors: list[str],
    *,
    expected_public_key: str | None = None,
) -> RecordCheck:
    """Look for a usable DKIM key at `<selector>._domainkey.<domain>` for each selector.

    CNAMEs (common for hosted DKIM) are followed by the resolver. With
    `expected_public_key`, at least one published key must be that key.
    """
    domain = normalize_name(domain)
    expected = _expected_key_bytes(expected_public_key) if expected_public_key else None
    wanted = list(dict.fromkeys(s.strip().lower().rstrip(".") for s in selectors if s.strip()))
    if not wanted:
        return RecordCheck(
            "dkim", "unknown", "No DKIM selectors to check.", details={"selectors": []}
        )
    names = [normalize_name(f"{selector}._domainkey.{domain}") for selector in wanted]
    results = await asyncio.gather(*(lookup_txt(resolver, name) for name in names))

    per_selector: list[dict[str, object]] = []
    found: list[str] = []
    valid: list[tuple[str, DkimKey]] = []
    invalid: list[str] = []
    unknown: list[str] = []
    notes: dict[str, list[str]] = {}
    for selector, result in zip(wanted, results, strict=True):
        entry: dict[str, object] = {"selector": selector, "name": result.name}
        per_selector.append(entry)
        if result.canonical_name and result.canonical_name != result.name:
            entry["canonicalName"] = result.canonical_name
        if result.unknown:
            entry.update(status="unknown", reason=result.reason)
            unknown.append(selector)
            continue
        if result.missing or not result.records:
            entry.update(status="missing")
            continue
        keys = [parse_dkim_key(text) for text in result.records]
        found.extend(result.records)
        usable = [key for key in keys if key.valid]
        if not usable:
            entry.update(
                status="revoked" if any(k.revoked for k in keys) else "invalid",
                problem="; ".join(k.problem for k in keys),
            )
            invalid.append(f"{selector}: {keys[0].problem}")
            continue
        key = usable[0]
        entry.update(
            status="valid", keyType=key.key_type, keyBits=key.key_bits, testing=key.testing
        )
        selector_notes = notes.setdefault(selector, [])
        if len(result.records) > 1:
            selector_notes.append(
                f"selector {selector} has {len(result.records)} TXT records; verifiers may pick any"
            )
        if key.testing:
            selector_notes.append(f"selector {selector} is in testing mode (t=y)")
        if key.key_type == "rsa" and key.key_bits < 2048:
            selector_notes.append(
                f"selector {selector} uses a {key.key_bits}-bit RSA key; 2048 bits is recommended"
            )
        valid.append((selector, key))

    details: dict[str, object] = {
        "selectors": per_selector,
        "validSelectors": [selector for selector, _ in valid],
    }
    if expected is not None:
        matching = [selector for selector, key in valid if key.key_bytes == expected]
        details["matchingSelectors"] = matching
        if valid and not matching:
            return RecordCheck(
                "dkim",
                "fail",
                "DKIM key mismatch: selector(s) "
                f"{', '.join(selector for selector, _ in valid)} publish a different key "
                "than the one expected.",
                found,
                details,
            )
        valid = [(selector, key) for selector, key in valid if selector in matching]

    if valid:
        names_found = ", ".join(selector for selector, _ in valid)
        warnings = [note for selector, _ in valid for note in notes[selector]]
        if warnings:
            return RecordCheck(
                "dkim",
                "warn",
                _sentence(f"DKIM key found ({names_found}), but " + "; ".join(warnings)),
                found,
                details,
            )
        return RecordCheck(
            "dkim", "pass", f"DKIM key found for selector(s) {names_found}.", found, details
        )
    if invalid:
        return RecordCheck(
            "dkim",
            "fail",
            _sentence("DKIM record is unusable: " + "; ".join(invalid)),
            found,
            details,
        )
    if unknown:
        return RecordCheck(
            "dkim",
            "unknown",
            f"Could not look up DKIM selector(s) {', '.join(unknown)}; no key found in the others.",
            found,
            details,
        )
    return RecordCheck(
        "dkim",
        "fail",
        f"No DKIM key found for {domain} (selectors tried: {', '.join(wanted)}).",
        found,
        details,
    )


# ------------------------------------------------------------------------ DMARC

_DMARC_POLICIES = frozenset({"none", "quarantine", "reject"})
_DMARC_KNOWN_TAGS = frozenset(
    {"v", "p", "sp", "np", "pct", "rua", "ruf", "adkim", "aspf", "fo", "ri", "rf", "psd", "t"}
)
_MAILTO_RE = re.compile(r"mailto:([^@\s!,]+@[^@\s!,]+\.[^@\s!,]+)(?:!\d+[kmgtKMGT]?)?")


def _looks_like_dmarc(text: str) -> bool:
    return re.match(r"\s*v\s*=\s*dmarc", text, re.IGNORECASE) is not None


def validate_dmarc(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """Tags, errors and warnings of one DMARC record (RFC 7489 6.3)."""
    raw_tags, errors = parse_tags(text)
    tags = {name.lower(): value for name, value in raw_tags.items()}
    warnings: list[str] = []
    if len(tags) < len(raw_tags):
        errors.append("a tag appears more than once (in different case)")
    if next(iter(raw_tags), None) != "v" or raw_tags.get("v") != "DMARC1":
        errors.append("the record must start with v=DMARC1")
    for name in ("p", "sp", "np"):
        if name in tags and tags[name].lower() not in _DMARC_POLICIES:
            errors.append(f"{name}={tags[name]} is not none, quarantine or reject")
    if "p" not in tags:
        errors.append("the required p= tag is missing")
    if "pct" in tags:
        pct = tags["pct"]
        if not pct.isdigit() or not 0 <= int(pct) <= 100:
            errors.append(f"pct={pct} is not a whole number from 0 to 100")
        elif int(pct) < 100 and tags.get("p", "").lower() != "none":
            warnings.append(f"pct={pct} applies the policy to only part of the mail")
    for name in ("rua", "ruf"):
        if name in tags:
            for uri in tags[name].split(","):
                if not _MAILTO_RE.fullmatch(uri.strip()):
                    errors.append(
                        f"{name} contains {uri.strip()!r}, which is not a mailto: address"
                    )
    for name in ("adkim", "aspf"):
        if name in tags and tags[name].lower() not in ("r", "s"):
            errors.append(f"{name}={tags[name]} is not r or s")
    if "fo" in tags and not all(
        option.strip() in ("0", "1", "d", "s") for option in tags["fo"].split(":")
    ):
        errors.append(f"fo={tags['fo']} is not a colon-separated list of 0, 1, d, s")
    if "ri" in tags and not (tags["ri"].isdigit() and int(tags["ri"]) < 2**32):
        errors.append(f"ri={tags['ri']} is not a whole number of seconds")
    if "rf" in tags and not all(
        re.fullmatch(r"[A-Za-z0-9\-]+", fmt.strip()) for fmt in tags["rf"].split(":")
    ):
        errors.append(f"rf={tags['rf']} is not a colon-separated list of formats")
    if "psd" in tags and tags["psd"].lower() not in ("y", "n", "u"):
        errors.append(f"psd={tags['psd']} is not y, n or u")
    if "t" in tags and tags["t"].lower() not in ("y", "n"):
        errors.append(f"t={tags['t']} is not y or n")
    unknown = [name for name in raw_tags if name.lower() not in _DMARC_KNOWN_TAGS]
    if unknown:
        warnings.append(f"unknown tag(s) {', '.join(unknown)} are ignored by receivers")
    return tags, errors, warnings


def organizational_domain(domain: str) -> str:
    """RFC 7489's organizational domain: the registrable domain by the Public Suffix
    List (`mail.example.co.uk` -> `example.co.uk`, never `co.uk`)."""
    return registrable_domain(domain) or domain


async def check_dmarc(resolver: dns.asyncresolver.Resolver, domain: str) -> RecordCheck:
    """Validate the DMARC record at `_dmarc.<domain>`, or the organizational domain's."""
    domain = normalize_name(domain)
    policy_domain = domain
    result = await lookup_txt(resolver, f"_dmarc.{domain}")
    if result.unknown:
        return _unknown("dmarc", f"the DMARC record of {domain}", result)
    texts = list(result.records)
    inherited = False
    org = organizational_domain(domain)
    if not any(_looks_like_dmarc(text) for text in texts) and org != domain:
        org_result = await lookup_txt(resolver, f"_dmarc.{org}")
        if org_result.unknown:
            return _unknown("dmarc", f"the DMARC record of {org}", org_result)
        if any(_looks_like_dmarc(text) for text in org_result.records):
            texts, policy_domain, inherited = list(org_result.records), org, True

    records = [text for text in texts if _looks_like_dmarc(text)]
    details: dict[str, object] = {
        "queried": f"_dmarc.{policy_domain}",
        "policyDomain": policy_domain,
        "inherited": inherited,
    }
    if not records:
        return RecordCheck("dmarc", "fail", f"{domain} has no DMARC record.", details=details)
    source = (
        f"No DMARC record at _dmarc.{domain}; the organizational domain {org}'s record applies. "
        if inherited
        else ""
    )
    if len(records) > 1:
        return RecordCheck(
            "dmarc",
            "fail",
            f"{source}_dmarc.{policy_domain} has multiple DMARC records; "
            "receivers ignore all of them.",
            records,
            details,
        )
    record = records[0]
    tags, errors, warnings = validate_dmarc(record)
    details.update(record=record, tags=tags, errors=errors, warnings=warnings)
    if errors:
        return RecordCheck(
            "dmarc",
            "fail",
            _sentence(f"{source}DMARC record is invalid: " + "; ".join(dict.fromkeys(errors))),
            [record],
            details,
        )
    # A subdomain inherits sp= when the organizational domain sets it, else p=.
    policy_tag = "sp" if inherited and "sp" in tags else "p"
    policy = tags[policy_tag].lower()
    details["policy"] = policy
    if policy == "none":
        warnings.insert(0, f"{policy_tag}=none only monitors; receivers still deliver spoofed mail")
    if warnings:
        return RecordCheck(
            "dmarc",
            "warn",
            _sentence(f"{source}DMARC policy is {policy}, but " + "; ".join(warnings)),
            [record],
            details,
        )
    return RecordCheck("dmarc", "pass", f"{source}DMARC policy is {policy}.", [record], details)


# ----------------------------------------------------------------------- domain


async def check_domain(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    *,
    provider: str = "custom",
    dkim_selectors: list[str] | None = None,
    expected_mx: list[str] | None = None,
    spf_include: str | None = None,
    expected_dkim_key: str | None = None,
) -> DomainCheck:
    """Run the MX, SPF, DKIM and DMARC checks concurrently.

    DKIM selectors default to the provider's (DEFAULT_DKIM_SELECTORS); an unknown
    provider gets the "custom" list.
    """
    domain = normalize_name(domain)
    selectors = (
        dkim_selectors
        if dkim_selectors is not None
        else DEFAULT_DKIM_SELECTORS.get(provider.lower(), DEFAULT_DKIM_SELECTORS["custom"])
    )
    checked_at = utcnow()
    mx, spf, dkim, dmarc = await asyncio.gather(
        check_mx(resolver, domain, expected_mx),
        check_spf(resolver, domain, required_include=spf_include),
        check_dkim(resolver, domain, selectors, expected_public_key=expected_dkim_key),
        check_dmarc(resolver, domain),
    )
    return DomainCheck(domain, checked_at, mx, spf, dkim, dmarc)
