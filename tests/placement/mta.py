"""What a sending and a receiving mail server add to a message, for the test mail network.

`AuthenticatingRelay` is the submission server's `transform`: like a provider's
outbound side it DKIM-signs mail from domains it holds a key for (dkimpy, the same
library and options as the hosted mail server's filter); like the receiving side
it then checks the message as delivered and writes an Authentication-Results
header on top:

- dkim: dkimpy verifies the signature against the key published in the test DNS
  server (pass, fail, or none without a signature);
- spf: the envelope sender's domain's SPF record from the test DNS server, for the
  connecting address 127.0.0.1: `ip4:` terms that cover it pass; otherwise the
  record's `all` decides (-all fail, ~all softfail, ?all neutral); no record, none.
  Only what the test's records use (ip4 and all) is evaluated;
- dmarc: the From domain's `_dmarc` record: pass when SPF or DKIM passed for a
  domain equal to the From domain (strict alignment), else fail; none without one.

Every lookup is a real DNS query to the test server, so a changed record changes
the header: nothing here is written down in advance.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses

import dkim  # type: ignore[import-untyped]
import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailfleet.mailserver.dkimfilter import SIGNED_HEADERS
from tests.servers.dnsserver import LocalDnsServer

AUTHSERV_ID = "mx.mailnet.test"
CLIENT_IP = ipaddress.ip_address("127.0.0.1")


@dataclass(frozen=True)
class DkimKey:
    selector: str
    private_pem: bytes
    public_txt: str


def new_dkim_key(selector: str = "mf1") -> DkimKey:
    # 1024 bits: quick to make, and dkimpy's least; the test only needs it to verify.
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_txt = f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode()}"
    return DkimKey(selector, private_pem, public_txt)


@dataclass
class AuthenticatingRelay:
    dns: LocalDnsServer
    keys: dict[str, DkimKey] = field(default_factory=dict)

    def publish_key(self, domain: str, key: DkimKey) -> None:
        """Sign mail from `domain` with `key`, and publish its public half."""
        self.keys[domain] = key
        self.dns.set_records(f"{key.selector}._domainkey.{domain}", "TXT", [key.public_txt])

    def _resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [self.dns.host]
        resolver.port = self.dns.port
        resolver.lifetime = 5
        return resolver

    def _txt(self, name: str) -> list[str]:
        try:
            answer = self._resolver().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        return [b"".join(record.strings).decode() for record in answer]

    def _dkim_txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        found = self._txt(text.rstrip("."))
        return found[0].encode() if found else None

    def spf(self, domain: str) -> str:
        records = [t for t in self._txt(domain) if t.lower().startswith("v=spf1")]
        if len(records) != 1:
            return "none" if not records else "permerror"
        for term in records[0].split()[1:]:
            qualifier = term[0] if term[0] in "+-~?" else "+"
            mechanism = term.lstrip("+-~?").lower()
            matched = False
            if mechanism == "all":
                matched = True
            elif mechanism.startswith("ip4:"):
                matched = CLIENT_IP in ipaddress.ip_network(mechanism[4:], strict=False)
            if matched:
                return {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}[qualifier]
        return "neutral"

    def __call__(self, login: str, mail_from: str, rcpt_tos: list[str], content: bytes) -> bytes:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(content)
        from_addresses = getaddresses([str(v) for v in headers.get_all("from", [])])
        from_domain = from_addresses[0][1].rsplit("@", 1)[-1].lower() if from_addresses else ""
        key = self.keys.get(from_domain)
        if key is not None:
            signature: bytes = dkim.sign(
                content,
                key.selector.encode(),
                from_domain.encode(),
                key.private_pem,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=SIGNED_HEADERS,
            )
            content = signature + content
        envelope_domain = mail_from.rsplit("@", 1)[-1].lower()
        spf = self.spf(envelope_domain)
        if b"dkim-signature:" in content.lower():
            verified = dkim.verify(content, dnsfunc=self._dkim_txt)
            dkim_result = "pass" if verified else "fail"
        else:
            dkim_result = "none"
        dmarc_records = [
            t for t in self._txt(f"_dmarc.{from_domain}") if t.lower().startswith("v=dmarc1")
        ]
        if not dmarc_records:
            dmarc = "none"
        else:
            aligned_spf = spf == "pass" and envelope_domain == from_domain
            aligned_dkim = dkim_result == "pass" and key is not None
            dmarc = "pass" if aligned_spf or aligned_dkim else "fail"
        header = (
            f"Authentication-Results: {AUTHSERV_ID};\r\n"
            f"\tspf={spf} smtp.mailfrom={mail_from};\r\n"
            f"\tdkim={dkim_result} header.d={from_domain};\r\n"
            f"\tdmarc={dmarc} header.from={from_domain}\r\n"
        )
        return header.encode() + content
