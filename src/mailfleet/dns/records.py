"""DNS records: validation per type, and builders for mail records (MX, SPF, DKIM, DMARC).

Records are kept in one canonical form (`RecordData`) that every DNS provider
translates: names fully qualified in ASCII without the trailing dot; the value
without its priority; TXT text unsplit (split into 255-byte strings only on the
wire, `txt_strings`).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailfleet.dns.checks import parse_spf, validate_dmarc
from mailfleet.kit import names

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "CAA"]
RECORD_TYPES: tuple[RecordType, ...] = get_args(RecordType)
MailProvider = Literal["google", "microsoft", "zoho", "custom", "self-hosted"]

MIN_TTL = 60
MAX_TTL = 86400
DEFAULT_TTL = 3600
TXT_STRING_LIMIT = 255
# Long enough for a 4096-bit DKIM key with room to spare; providers cap near here.
TXT_MAX_LENGTH = 4000
DKIM_KEY_BITS = 2048

_LABEL_RE = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_CAA_TAG_RE = re.compile(r"[A-Za-z0-9]{1,15}")


class RecordError(ValueError):
    """Invalid record input; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class RecordData:
    name: str
    type: RecordType
    content: str
    ttl: int = DEFAULT_TTL
    priority: int | None = None

    @property
    def rrset(self) -> tuple[str, str]:
        return (self.name, self.type)

    def same_value(self, other: RecordData) -> bool:
        return (self.name, self.type, self.content, self.priority) == (
            other.name,
            other.type,
            other.content,
            other.priority,
        )

    def zone_file_value(self) -> str:
        """The value in zone-file syntax (PowerDNS's API takes this form)."""
        if self.type in ("CNAME", "NS"):
            return absolute(self.content)
        if self.type == "MX":
            return f"{self.priority} {absolute(self.content)}"
        if self.type == "SRV":
            weight, port, target = self.content.split(" ")
            return f"{self.priority} {weight} {port} {absolute(target)}"
        if self.type == "TXT":
            return " ".join(quote_txt(part) for part in txt_strings(self.content))
        return self.content


def absolute(host: str) -> str:
    return "." if host in ("", ".") else host + "."


def txt_strings(text: str) -> list[str]:
    """TXT text as DNS character-strings of at most 255 bytes each (RFC 1035 3.3.14)."""
    data = text.encode("utf-8")
    if not data:
        return [""]
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + TXT_STRING_LIMIT, len(data))
        # Never cut a multi-byte character in half.
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start = end
    return parts


def quote_txt(part: str) -> str:
    return '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote_txt(value: str) -> str:
    """Join a zone-file TXT value ('"a" "b"') back into text; bare text is kept as is."""
    text = value.strip()
    if not text.startswith('"'):
        return text
    parts: list[str] = []
    current: list[str] = []
    inside = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and inside:
            escaped = True
        elif char == '"':
            if inside:
                parts.append("".join(current))
                current = []
            inside = not inside
        elif inside:
            current.append(char)
    return "".join(parts)


def to_ascii_domain(value: str, field: str = "domain") -> tuple[str, str]:
    """A registrable-looking domain name as (ascii, unicode), IDNA-normalised."""
    text = value.strip().rstrip(".").lower()
    if not text:
        raise RecordError(field, "a domain name is required")
    if "://" in text or "/" in text or "@" in text or ":" in text:
        raise RecordError(field, f"{value!r} is not a domain name (no scheme, path or port)")
    try:
        ascii_domain = names.ascii_name(text)
    except ValueError as exc:
        raise RecordError(field, f"{value!r} is not a valid domain name ({exc})") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise RecordError(field, f"{value!r} is not a valid domain name (e.g. example.com)")
    if not all(_LABEL_RE.fullmatch(label) and "_" not in label for label in labels):
        raise RecordError(field, f"{value!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise RecordError(field, f"{value!r} is an address, not a domain name")
    return ascii_domain, names.unicode_name(ascii_domain)


def _host(value: str, field: str, *, allow_root: bool = False) -> str:
    text = value.strip().rstrip(".").lower()
    if not text:
        if allow_root:
            return ""
        raise RecordError(field, "a host name is required")
    try:
        encoded = names.ascii_name(text)
    except ValueError:
        raise RecordError(field, f"{value!r} is not a valid host name") from None
    labels = encoded.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise RecordError(field, f"{value!r} is not a valid host name")
    return encoded


def record_name(name: str, zone: str) -> str:
    """The absolute name of a record given as "@", a relative name, or a full name."""
    text = name.strip().lower()
    if text in ("", "@"):
        return zone
    if text.endswith("."):
        full = text.rstrip(".")
    elif text == zone or text.endswith("." + zone):
        full = text
    else:
        full = f"{text}.{zone}"
    labels = full.split(".")
    wildcard = labels[0] == "*"
    try:
        rest = names.ascii_name(".".join(labels[1:] if wildcard else labels))
    except ValueError:
        raise RecordError("name", f"{name!r} is not a valid record name") from None
    full = ("*." if wildcard else "") + rest
    if len(full) > 253 or not all(
        _LABEL_RE.fullmatch(label) for label in (labels[1:] if wildcard else full.split("."))
    ):
        raise RecordError("name", f"{name!r} is not a valid record name")
    if full != zone and not full.endswith("." + zone):
        raise RecordError("name", f"{name!r} is outside the zone {zone}")
    return full


def relative_name(name: str, zone: str) -> str:
    return "@" if name == zone else name[: -(len(zone) + 1)]


def _uint(value: int | None, field: str, what: str, maximum: int = 65535) -> int:
    if value is None:
        raise RecordError(field, f"{what} is required")
    if not 0 <= value <= maximum:
        raise RecordError(field, f"{what} must be between 0 and {maximum}")
    return value


def validate_record(
    zone: str,
    rtype: str,
    name: str,
    content: str,
    *,
    ttl: int | None = None,
    priority: int | None = None,
) -> RecordData:
    """Check one record's name, value, TTL and priority; return its canonical form."""
    kind = rtype.strip().upper()
    if kind not in RECORD_TYPES:
        raise RecordError("type", f"type must be one of {', '.join(RECORD_TYPES)}")
    record_type: RecordType = kind
    full_name = record_name(name, zone)
    if ttl is None:
        ttl = DEFAULT_TTL
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise RecordError("ttl", f"ttl must be between {MIN_TTL} and {MAX_TTL} seconds")
    if priority is not None and record_type not in ("MX", "SRV"):
        raise RecordError("priority", "priority applies to MX and SRV records only")
    value = content.strip() if record_type != "TXT" else content
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise RecordError("content", "content must not contain control characters or newlines")

    if record_type == "A":
        try:
            value = str(ipaddress.IPv4Address(value))
        except ValueError:
            raise RecordError("content", f"{content!r} is not an IPv4 address") from None
    elif record_type == "AAAA":
        try:
            value = str(ipaddress.IPv6Address(value))
        except ValueError:
            raise RecordError("content", f"{content!r} is not an IPv6 address") from None
    elif record_type == "CNAME":
        if full_name == zone:
            raise RecordError("name", "a CNAME cannot be at the zone apex (it holds SOA and NS)")
        value = _host(value, "content")
    elif record_type == "NS":
        if full_name == zone:
            raise RecordError("name", "the apex NS records belong to the DNS provider")
        value = _host(value, "content")
    elif record_type == "MX":
        priority = _uint(priority, "priority", "MX priority")
        # "." is a null MX (RFC 7505): the domain accepts no mail.
        value = _host(value, "content", allow_root=value.strip() == ".")
    elif record_type == "SRV":
        priority = _uint(priority, "priority", "SRV priority")
        labels = full_name.split(".")
        if len(labels) < 3 or not (labels[0].startswith("_") and labels[1].startswith("_")):
            raise RecordError("name", "an SRV name starts with _service._proto (e.g. _sip._tcp)")
        parts = value.split()
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise RecordError("content", 'SRV content is "weight port target"')
        weight = _uint(int(parts[0]), "content", "SRV weight")
        port = _uint(int(parts[1]), "content", "SRV port")
        target = _host(parts[2], "content", allow_root=parts[2] == ".")
        value = f"{weight} {port} {target or '.'}"
    elif record_type == "TXT":
        if not value:
            raise RecordError("content", "TXT content must not be empty")
        if len(value) > TXT_MAX_LENGTH:
            raise RecordError("content", f"TXT content is limited to {TXT_MAX_LENGTH} characters")
    else:  # CAA
        value = _caa(value)
    return RecordData(full_name, record_type, value, ttl, priority)


def _caa(value: str) -> str:
    match = re.fullmatch(r"(\d{1,3})\s+(\S+)\s+(.+)", value)
    if match is None:
        raise RecordError("content", 'CAA content is: flags tag "value" (e.g. 0 issue "ca.test")')
    flags, tag, raw = int(match.group(1)), match.group(2).lower(), match.group(3).strip()
    if flags > 255:
        raise RecordError("content", "CAA flags must be between 0 and 255")
    if not _CAA_TAG_RE.fullmatch(tag):
        raise RecordError("content", "CAA tag is letters and digits (issue, issuewild, iodef)")
    inner = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if '"' in inner:
        raise RecordError("content", "CAA value must not contain quotes")
    return f'{flags} {tag} "{inner}"'


def caa_parts(content: str) -> tuple[int, str, str]:
    flags, tag, value = content.split(" ", 2)
    return int(flags), tag, value.strip('"')


def is_spf(record: RecordData) -> bool:
    return record.type == "TXT" and record.content[:7].lower() in ("v=spf1", "v=spf1 ")


def is_dmarc(record: RecordData) -> bool:
    return record.type == "TXT" and re.match(r"\s*v\s*=\s*dmarc1", record.content, re.I) is not None


def zone_conflicts(records: Iterable[RecordData], zone: str) -> list[tuple[str, str]]:
    """(field, message) for rules a zone as a whole must keep: CNAME exclusivity
    (RFC 1034 3.6.2), one SPF record per name (RFC 7208 3.2), one DMARC record."""
    by_name: dict[str, list[RecordData]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    problems: list[tuple[str, str]] = []
    for name, group in by_name.items():
        cnames = [r for r in group if r.type == "CNAME"]
        if cnames and len(group) > 1:
            problems.append(
                ("name", f"{name} has a CNAME, which cannot coexist with any other record there")
            )
        if sum(1 for r in group if is_spf(r)) > 1:
            problems.append(
                ("content", f"{name} would have two SPF records; edit the existing one instead")
            )
        if name.startswith("_dmarc.") and sum(1 for r in group if is_dmarc(r)) > 1:
            problems.append(
                ("content", f"{name} would have two DMARC records; use POST .../dmarc instead")
            )
        seen: set[tuple[str, str, int | None]] = set()
        for r in group:
            key = (r.type, r.content, r.priority)
            if key in seen:
                problems.append(("content", f"{name} already has this {r.type} record"))
            seen.add(key)
    return problems


# ------------------------------------------------------------------ mail records


@dataclass(frozen=True)
class MailPlan:
    """What a mail provider needs in DNS: records Mailfleet writes, and steps left
    to the customer (values only the provider's console shows)."""

    records: list[tuple[str, RecordData]]
    instructions: list[dict[str, object]] = field(default_factory=list)
    expected_mx: list[str] = field(default_factory=list)
    spf_include: str | None = None
    dkim_selectors: list[str] = field(default_factory=list)


def _dashed(domain: str) -> str:
    return domain.replace(".", "-")


def mail_plan(
    domain: str,
    provider: MailProvider,
    *,
    dkim_selector: str | None = None,
    dkim_public_key: str | None = None,
    existing_spf: str | None = None,
    mail_host: str | None = None,
    ttl: int = DEFAULT_TTL,
) -> MailPlan:
    """The MX, SPF and DKIM records (DMARC is separate, `dmarc_record`) for a provider."""
    records: list[tuple[str, RecordData]] = []
    instructions: list[dict[str, object]] = []
    mx: list[tuple[int, str]] = []
    includes: list[str] = []
    selectors: list[str] = []
    include: str | None = None
    if provider == "google":
        mx = [(1, "smtp.google.com")]
        include = "_spf.google.com"
        selectors = ["google"]
        instructions.append(
            {
                "purpose": "dkim",
                "type": "TXT",
                "name": f"google._domainkey.{domain}",
                "value": "v=DKIM1; k=rsa; p=<public key>",
                "instructions": "Generate the DKIM key in the Google Admin console (Apps > "
                "Google Workspace > Gmail > Authenticate email), then add it here as a TXT "
                "record with POST /v1/domains/{id}/dns-records.",
            }
        )
    elif provider == "microsoft":
        mx = [(0, f"{_dashed(domain)}.mail.protection.outlook.com")]
        include = "spf.protection.outlook.com"
        selectors = ["selector1", "selector2"]
        records.append(
            (
                "autodiscover",
                RecordData(f"autodiscover.{domain}", "CNAME", "autodiscover.outlook.com", ttl),
            )
        )
        for selector in selectors:
            instructions.append(
                {
                    "purpose": "dkim",
                    "type": "CNAME",
                    "name": f"{selector}._domainkey.{domain}",
                    "value": f"{selector}-{_dashed(domain)}._domainkey.<tenant>.onmicrosoft.com",
                    "instructions": "Copy the exact value from the Microsoft Defender portal "
                    "(Email authentication settings > DKIM), then add it as a CNAME record.",
                }
            )
    elif provider == "zoho":
        mx = [(10, "mx.zoho.com"), (20, "mx2.zoho.com"), (50, "mx3.zoho.com")]
        include = "zoho.com"
        selectors = ["zmail"]
        instructions.append(
            {
                "purpose": "dkim",
                "type": "TXT",
                "name": f"zmail._domainkey.{domain}",
                "value": "v=DKIM1; k=rsa; p=<public key>",
                "instructions": "Create a DKIM selector (e.g. zmail) in the Zoho Mail admin "
                "console (Domains > Email configuration > DKIM) and add its TXT record here.",
            }
        )
    elif provider == "self-hosted":
        # MAILFLEET_MAIL_HOSTNAME when Mailfleet runs the mail server itself.
        mail_host = mail_host or f"mail.{domain}"
        mx = [(10, mail_host)]
        includes = ["mx"]
        if dkim_selector and dkim_public_key:
            selectors = [dkim_selector]
            records.append(
                (
                    "dkim",
                    RecordData(
                        f"{dkim_selector}._domainkey.{domain}",
                        "TXT",
                        dkim_txt(dkim_public_key),
                        ttl,
                    ),
                )
            )
        instructions.append(
            {
                "purpose": "mail-host",
                "type": "A",
                "name": mail_host,
                "value": "<your mail server's IPv4 address>",
                "instructions": "Point mail host at your mail server with an A record "
                "(POST /v1/domains/{id}/dns-records).",
            }
        )
    else:  # custom
        instructions.append(
            {
                "purpose": "mx",
                "type": "MX",
                "name": domain,
                "value": "<your provider's MX hosts>",
                "instructions": "Add your mail provider's MX records, its SPF include and its "
                "DKIM record with POST /v1/domains/{id}/dns-records.",
            }
        )
    for preference, host in mx:
        records.append(("mx", RecordData(domain, "MX", host, ttl, preference)))
    if include:
        includes = [f"include:{include}"]
    if includes:
        records.append(("spf", RecordData(domain, "TXT", merge_spf(existing_spf, includes), ttl)))
    return MailPlan(
        records=records,
        instructions=instructions,
        expected_mx=[host for _, host in mx],
        spf_include=include,
        dkim_selectors=selectors,
    )


def merge_spf(existing: str | None, mechanisms: Sequence[str], default_all: str = "~all") -> str:
    """One SPF record holding `existing`'s terms plus `mechanisms`, keeping its 'all'."""
    terms: list[str] = []
    modifiers: list[str] = []
    final_all = default_all
    has_redirect = False
    if existing:
        parsed = parse_spf(existing)
        for term in parsed.terms:
            if term.kind == "modifier":
                modifiers.append(term.text)
                has_redirect = has_redirect or term.name == "redirect"
            elif term.name == "all":
                final_all = term.text
            else:
                terms.append(term.text)
        if parsed.all_term is None and has_redirect:
            # An 'all' would switch the redirect off (RFC 7208 6.1).
            final_all = ""
    lowered = {term.lower() for term in terms}
    for mechanism in mechanisms:
        if mechanism.lower() not in lowered:
            terms.append(mechanism)
            lowered.add(mechanism.lower())
    return _spf_text(terms, final_all, modifiers)


def _spf_text(terms: Sequence[str], final_all: str, modifiers: Sequence[str]) -> str:
    """An SPF record: its mechanisms, then its 'all' (if any), then its modifiers."""
    return " ".join(part for part in ["v=spf1", *terms, final_all, *modifiers] if part)


def strip_spf(existing: str, mechanisms: Sequence[str]) -> str | None:
    """`existing` without `mechanisms` (as `merge_spf` added them; case aside), or
    None when no mechanism or modifier is left (the record would only say 'all')."""
    parsed = parse_spf(existing)
    dropped = {mechanism.lower() for mechanism in mechanisms}
    kept = [
        term
        for term in parsed.terms
        if term.kind == "modifier" or (term.name != "all" and term.text.lower() not in dropped)
    ]
    if not kept:
        return None
    return _spf_text(
        [term.text for term in kept if term.kind != "modifier"],
        parsed.all_term.text if parsed.all_term is not None else "",
        [term.text for term in kept if term.kind == "modifier"],
    )


# ------------------------------------------------------------------------- DKIM


def generate_dkim_key() -> tuple[str, str]:
    """A new RSA-2048 key pair: (private key PEM, public key as DKIM's base64 DER)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode("ascii")


def dkim_txt(public_key: str) -> str:
    return f"v=DKIM1; k=rsa; p={public_key}"


def dkim_selector(moment: datetime, taken: Iterable[str]) -> str:
    """mf<yyyymm>, with a letter appended when that month's selector is taken."""
    base = f"mf{moment:%Y%m}"
    used = set(taken)
    if base not in used:
        return base
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if base + letter not in used:
            return base + letter
    raise RecordError("selector", "too many DKIM rotations this month")


# ------------------------------------------------------------------------ DMARC

DmarcPolicyName = Literal["none", "quarantine", "reject"]


@dataclass(frozen=True)
class DmarcPolicy:
    p: DmarcPolicyName = "quarantine"
    sp: DmarcPolicyName | None = None
    pct: int | None = None
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    adkim: Literal["r", "s"] | None = None
    aspf: Literal["r", "s"] | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "p": self.p,
            "sp": self.sp,
            "pct": self.pct,
            "rua": list(self.rua),
            "ruf": list(self.ruf),
            "adkim": self.adkim,
            "aspf": self.aspf,
        }


def _mailto(address: str) -> str:
    text = address.strip()
    return text if text.lower().startswith("mailto:") else f"mailto:{text}"


def dmarc_record(policy: DmarcPolicy) -> str:
    """The DMARC TXT value for a policy, checked by the same validator the DNS check uses."""
    tags = [f"v=DMARC1; p={policy.p}"]
    if policy.sp:
        tags.append(f"sp={policy.sp}")
    if policy.pct is not None:
        tags.append(f"pct={policy.pct}")
    if policy.rua:
        tags.append("rua=" + ",".join(_mailto(a) for a in policy.rua))
    if policy.ruf:
        tags.append("ruf=" + ",".join(_mailto(a) for a in policy.ruf))
    if policy.adkim:
        tags.append(f"adkim={policy.adkim}")
    if policy.aspf:
        tags.append(f"aspf={policy.aspf}")
    text = "; ".join(tags)
    _, errors, _ = validate_dmarc(text)
    if errors:
        raise RecordError("dmarc", "; ".join(errors))
    return text
