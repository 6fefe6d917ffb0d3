"""MX, SPF, DKIM and DMARC checks against a real DNS server on loopback."""

from __future__ import annotations

import base64
import itertools
import json
import time
from datetime import UTC

import dns.asyncresolver
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfleet.dns.checks import (
    DEFAULT_DKIM_SELECTORS,
    check_dkim,
    check_dmarc,
    check_domain,
    check_mx,
    check_spf,
    parse_spf,
    worst_status,
)
from mailfleet.dns.resolver import lookup_txt, make_resolver, parse_nameserver
from tests.servers.dnsserver import DnsFailure, LocalDnsServer, SilentDnsServer

Zone = LocalDnsServer
Resolver = dns.asyncresolver.Resolver


@pytest.fixture(scope="module")
def rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def ed25519_key() -> str:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def publish_good_domain(zone: Zone, domain: str, dkim_key: str) -> None:
    zone.set_records(domain, "MX", ["10 mx1.provider.test", "20 mx2.provider.test"])
    zone.set_records(domain, "TXT", ["v=spf1 include:_spf.provider.test -all", "other=1"])
    zone.set_records(
        "_spf.provider.test", "TXT", ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"]
    )
    zone.set_records(f"google._domainkey.{domain}", "TXT", [f"v=DKIM1; k=rsa; p={dkim_key}"])
    zone.set_records(
        f"_dmarc.{domain}", "TXT", ["v=DMARC1; p=reject; rua=mailto:dmarc@provider.test"]
    )


# ----------------------------------------------------------------- whole domain


async def test_good_domain_passes_every_check(
    dns_zone: Zone, dns_resolver: Resolver, rsa_key: str
) -> None:
    publish_good_domain(dns_zone, "good.test", rsa_key)

    result = await check_domain(
        dns_resolver,
        "Good.Test.",
        provider="google",
        expected_mx=["MX1.provider.test."],
        spf_include="_spf.provider.test",
        expected_dkim_key=rsa_key,
    )

    assert [c.status for c in result.checks] == ["pass"] * 4, result.to_dict()
    assert result.overall == "pass"
    assert result.domain == "good.test"
    assert result.checked_at.tzinfo == UTC
    assert result.spf.details["lookupCount"] == 1
    assert result.dkim.details["validSelectors"] == ["google"]
    assert result.dkim.details["selectors"] == [
        {
            "selector": "google",
            "name": "google._domainkey.good.test",
            "status": "valid",
            "keyType": "rsa",
            "keyBits": 2048,
            "testing": False,
        }
    ]

    document = result.to_dict()
    json.dumps(document)
    assert set(document) == {"domain", "checkedAt", "overall", "mx", "spf", "dkim", "dmarc"}
    assert isinstance(document["checkedAt"], str)
    assert document["checkedAt"].endswith("Z")
    assert document["mx"] == {
        "name": "mx",
        "status": "pass",
        "message": "good.test has all expected MX records.",
        "found": ["10 mx1.provider.test", "20 mx2.provider.test"],
        "details": {
            "records": [
                {"preference": 10, "exchange": "mx1.provider.test"},
                {"preference": 20, "exchange": "mx2.provider.test"},
            ],
            "expectedHosts": ["mx1.provider.test"],
            "missingHosts": [],
        },
    }


async def test_unanswered_queries_are_unknown_never_missing(
    silent_dns_resolver: Resolver,
) -> None:
    started = time.monotonic()
    result = await check_domain(silent_dns_resolver, "slow.test")
    elapsed = time.monotonic() - started

    assert [c.status for c in result.checks] == ["unknown"] * 4, result.to_dict()
    assert result.overall == "unknown"
    assert "timed out" in result.mx.message
    assert result.mx.details["reason"] == "timeout"
    # The four checks run at once, each bounded by the resolver lifetime (0.3 s).
    assert elapsed < 2.0


async def test_timeout_of_one_name_only_makes_that_check_unknown(
    dns_zone: Zone, rsa_key: str
) -> None:
    publish_good_domain(dns_zone, "flaky.test", rsa_key)
    dns_zone.set_failure("_dmarc.flaky.test", "timeout")
    resolver = make_resolver([dns_zone.nameserver], timeout=0.3)

    result = await check_domain(resolver, "flaky.test", provider="google")

    assert result.dmarc.status == "unknown"
    assert result.dmarc.details["reason"] == "timeout"
    assert [result.mx.status, result.spf.status, result.dkim.status] == ["pass"] * 3
    assert result.overall == "unknown"


@pytest.mark.parametrize("failure", ["servfail", "refused"])
async def test_server_errors_are_unknown(
    dns_zone: Zone, dns_resolver: Resolver, failure: DnsFailure
) -> None:
    dns_zone.set_failure("broken.test", failure)

    mx = await check_mx(dns_resolver, "broken.test")
    spf = await check_spf(dns_resolver, "broken.test")

    assert (mx.status, spf.status) == ("unknown", "unknown")
    assert mx.details["reason"] == "servfail"


def test_overall_ranks_fail_over_unknown_over_warn() -> None:
    assert worst_status(["pass", "warn", "unknown", "fail"]) == "fail"
    assert worst_status(["pass", "warn", "unknown"]) == "unknown"
    assert worst_status(["pass", "warn"]) == "warn"
    assert worst_status([]) == "pass"


# --------------------------------------------------------------------------- MX


async def test_mx_expected_hosts_missing_warns(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("moved.test", "MX", ["10 mx.elsewhere.test"])

    result = await check_mx(
        dns_resolver, "moved.test", ["aspmx.l.google.test", "mx.elsewhere.test"]
    )

    assert result.status == "warn"
    assert result.details["missingHosts"] == ["aspmx.l.google.test"]
    assert "aspmx.l.google.test" in result.message


async def test_mx_absent_or_null_fails(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("nomx.test", "A", ["192.0.2.1"])
    dns_zone.set_records("nullmx.test", "MX", ["0 ."])

    no_mx = await check_mx(dns_resolver, "nomx.test")
    nxdomain = await check_mx(dns_resolver, "absent.test")
    null_mx = await check_mx(dns_resolver, "nullmx.test")

    assert (no_mx.status, no_mx.details["reason"]) == ("fail", "no-answer")
    assert (nxdomain.status, nxdomain.details["reason"]) == ("fail", "nxdomain")
    assert null_mx.status == "fail"
    assert "null MX" in null_mx.message


async def test_international_domain_is_queried_in_punycode(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    dns_zone.set_records("xn--bcher-kva.test", "MX", ["10 mx.xn--bcher-kva.test"])

    result = await check_mx(dns_resolver, "Bücher.test")

    assert result.status == "pass"
    assert dns_zone.queried("xn--bcher-kva.test", "MX") == 1


# -------------------------------------------------------------------------- SPF


def chain_of_includes(zone: Zone, domain: str, lookups: int) -> None:
    """An SPF record that needs `lookups` DNS lookups, via nested includes."""
    names = [f"n{i}.{domain}" for i in range(1, lookups + 1)]
    zone.set_records(domain, "TXT", [f"v=spf1 include:{names[0]} -all"])
    for current, following in itertools.pairwise(names):
        zone.set_records(current, "TXT", [f"v=spf1 include:{following} ip4:192.0.2.1 ~all"])
    zone.set_records(names[-1], "TXT", ["v=spf1 ip4:192.0.2.2 ~all"])


async def test_spf_with_eleven_nested_lookups_fails_with_the_count(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    chain_of_includes(dns_zone, "deep.test", 11)

    result = await check_spf(dns_resolver, "deep.test")

    assert result.status == "fail"
    assert result.details["lookupCount"] == 11
    assert "11 DNS lookups" in result.message
    assert "limit of 10" in result.message


async def test_spf_with_ten_lookups_passes(dns_zone: Zone, dns_resolver: Resolver) -> None:
    chain_of_includes(dns_zone, "ten.test", 10)

    result = await check_spf(dns_resolver, "ten.test")

    assert result.status == "pass", result.message
    assert result.details["lookupCount"] == 10


async def test_spf_lookups_count_every_kind_of_term(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("mixed.test", "TXT", ["v=spf1 a mx include:inc.mixed.test -all"])
    dns_zone.set_records("mixed.test", "A", ["192.0.2.10"])
    dns_zone.set_records("mixed.test", "MX", ["10 mx.mixed.test"])
    dns_zone.set_records(
        "inc.mixed.test", "TXT", ["v=spf1 exists:ok.mixed.test ptr redirect=red.mixed.test"]
    )
    dns_zone.set_records("ok.mixed.test", "A", ["127.0.0.2"])
    dns_zone.set_records("red.mixed.test", "TXT", ["v=spf1 a:mixed.test//64 -all"])

    result = await check_spf(dns_resolver, "mixed.test")

    # a, mx, include, exists, ptr, redirect, a
    assert result.details["lookupCount"] == 7
    assert result.details["voidLookupCount"] == 0
    assert result.status == "warn"  # ptr is deprecated
    assert "ptr" in result.message


async def test_two_spf_records_fail(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("twice.test", "TXT", ["v=spf1 -all", "v=spf1 include:x.test ~all"])

    result = await check_spf(dns_resolver, "twice.test")

    assert result.status == "fail"
    assert "multiple SPF records" in result.message
    assert sorted(result.found) == ["v=spf1 -all", "v=spf1 include:x.test ~all"]


async def test_more_than_two_void_lookups_fail(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records(
        "void.test",
        "TXT",
        ["v=spf1 a:gone1.void.test mx:gone2.void.test exists:gone3.void.test -all"],
    )
    dns_zone.set_records("two.test", "TXT", ["v=spf1 a:gone1.two.test mx:gone2.two.test -all"])

    three = await check_spf(dns_resolver, "void.test")
    two = await check_spf(dns_resolver, "two.test")

    assert three.status == "fail"
    assert three.details["voidLookupCount"] == 3
    assert "3 void DNS lookups" in three.message
    assert two.status == "pass"
    assert two.details["voidLookupCount"] == 2


async def test_spf_include_loop_is_reported_not_followed_forever(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    dns_zone.set_records("loop.test", "TXT", ["v=spf1 include:a.loop.test -all"])
    dns_zone.set_records("a.loop.test", "TXT", ["v=spf1 include:b.loop.test ~all"])
    dns_zone.set_records("b.loop.test", "TXT", ["v=spf1 include:loop.test ~all"])

    result = await check_spf(dns_resolver, "loop.test")

    assert result.status == "fail"
    assert "include loop: loop.test -> a.loop.test -> b.loop.test -> loop.test" in result.message
    assert result.details["lookupCount"] == 3
    assert dns_zone.queried("loop.test", "TXT") == 1


async def test_spf_include_without_record_fails(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("dangling.test", "TXT", ["v=spf1 include:gone.test -all"])

    result = await check_spf(dns_resolver, "dangling.test")

    assert result.status == "fail"
    assert "gone.test has no SPF record" in result.message
    assert result.details["voidLookupCount"] == 1


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("v=spf1 +all", "lets any server send"),
        ("v=spf1 ip4:192.0.2.1 ?all", "neutral"),
        ("v=spf1 ip4:192.0.2.1", "no 'all'"),
    ],
)
async def test_permissive_or_missing_all_warns(
    dns_zone: Zone, dns_resolver: Resolver, record: str, fragment: str
) -> None:
    dns_zone.set_records("loose.test", "TXT", [record])

    result = await check_spf(dns_resolver, "loose.test")

    assert result.status == "warn"
    assert fragment in result.message


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 ip4:300.1.1.1 -all",
        "v=spf1 ip6:192.0.2.1 -all",
        "v=spf1 ip4:192.0.2.0/33 -all",
        "v=spf1 include -all",
        "v=spf1 foo:bar.test -all",
        "v=spf1 a:bad..name -all",
        "v=spf1 redirect=a.test redirect=b.test",
        "v=spf1 include:%{z}.test -all",
    ],
)
async def test_spf_syntax_errors_fail(dns_zone: Zone, dns_resolver: Resolver, record: str) -> None:
    dns_zone.set_records("syntax.test", "TXT", [record])

    result = await check_spf(dns_resolver, "syntax.test")

    assert result.status == "fail", result.message
    assert result.details["errors"]


def test_spf_parser_accepts_the_full_grammar() -> None:
    record = parse_spf(
        "v=spf1 +a -mx:mail.example.test/24 ~a/24//64 ?ptr:example.test ip4:192.0.2.0/24 "
        "ip6:2001:db8::1 exists:%{i}.%{l1r-}.example.test include:_spf.example.test "
        "exp=explain.example.test custom-modifier=%{d} -all"
    )
    assert record.errors == ()
    assert [term.name for term in record.terms] == [
        "a", "mx", "a", "ptr", "ip4", "ip6", "exists", "include", "exp", "custom-modifier", "all",
    ]  # fmt: skip
    assert record.terms[1].qualifier == "-"
    assert record.terms[1].value == "mail.example.test"


async def test_spf_redirect_supplies_the_all(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("red.test", "TXT", ["v=spf1 redirect=_spf.red.test"])
    dns_zone.set_records("_spf.red.test", "TXT", ["v=spf1 ip4:192.0.2.0/24 -all"])

    result = await check_spf(dns_resolver, "red.test", required_include="_spf.red.test")

    assert result.status == "pass", result.message
    assert (result.details["all"], result.details["lookupCount"]) == ("-all", 1)


async def test_spf_include_ending_in_plus_all_warns(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("open.test", "TXT", ["v=spf1 include:wide.test -all"])
    dns_zone.set_records("wide.test", "TXT", ["v=spf1 +all"])

    result = await check_spf(dns_resolver, "open.test")

    assert result.status == "warn"
    assert "lets any server send" in result.message


async def test_spf_macros_are_counted_not_followed(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("macro.test", "TXT", ["v=spf1 exists:%{i}._spf.macro.test -all"])

    result = await check_spf(dns_resolver, "macro.test")

    assert result.status == "pass", result.message
    assert result.details["lookupCount"] == 1
    assert result.details["unevaluated"] == ["exists:%{i}._spf.macro.test"]
    assert dns_zone.queries == [("macro.test", "TXT", "udp")]


async def test_spf_required_include_missing_fails(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("own.test", "TXT", ["v=spf1 ip4:192.0.2.1 -all"])

    result = await check_spf(dns_resolver, "own.test", required_include="_spf.google.test")

    assert result.status == "fail"
    assert "does not include _spf.google.test" in result.message


async def test_spf_missing_fails(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("nospf.test", "TXT", ["google-site-verification=abc"])

    result = await check_spf(dns_resolver, "nospf.test")

    assert result.status == "fail"
    assert result.message == "nospf.test has no SPF record."


# ------------------------------------------------------------------------- DKIM


async def test_dkim_found_on_second_selector(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records(
        "s2._domainkey.two.test", "TXT", [f"v=DKIM1; k=ed25519; p={ed25519_key()}"]
    )

    result = await check_dkim(dns_resolver, "two.test", ["s1", "s2"])

    assert result.status == "pass", result.message
    assert result.details["validSelectors"] == ["s2"]
    selectors = result.details["selectors"]
    assert isinstance(selectors, list)
    assert [(s["selector"], s["status"]) for s in selectors] == [("s1", "missing"), ("s2", "valid")]


async def test_dkim_key_mismatch_fails(
    dns_zone: Zone, dns_resolver: Resolver, rsa_key: str
) -> None:
    dns_zone.set_records("google._domainkey.keys.test", "TXT", [f"v=DKIM1; p={rsa_key}"])

    mismatch = await check_dkim(
        dns_resolver, "keys.test", ["google"], expected_public_key=ed25519_key()
    )
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        + "\n".join(rsa_key[i : i + 64] for i in range(0, len(rsa_key), 64))
        + "\n-----END PUBLIC KEY-----\n"
    )
    match = await check_dkim(dns_resolver, "keys.test", ["google"], expected_public_key=pem)

    assert mismatch.status == "fail"
    assert "key mismatch" in mismatch.message
    assert match.status == "pass"


async def test_multi_string_dkim_record_is_concatenated(
    dns_zone: Zone, dns_resolver: Resolver, rsa_key: str
) -> None:
    strings = ["v=DKIM1; k=rsa; ", f"p={rsa_key[:100]}", rsa_key[100:200], rsa_key[200:]]
    dns_zone.set_records("mail._domainkey.split.test", "TXT", [strings])

    txt = await lookup_txt(dns_resolver, "mail._domainkey.split.test")
    result = await check_dkim(dns_resolver, "split.test", ["mail"])

    assert txt.records == (f"v=DKIM1; k=rsa; p={rsa_key}",)
    assert result.status == "pass", result.message
    assert result.found == [f"v=DKIM1; k=rsa; p={rsa_key}"]


async def test_dkim_follows_cname(dns_zone: Zone, dns_resolver: Resolver) -> None:
    key = ed25519_key()
    dns_zone.set_records("selector1._domainkey.hosted.test", "CNAME", ["keys.esp.test"])
    dns_zone.set_records("keys.esp.test", "TXT", [f"v=DKIM1; k=ed25519; p={key}"])

    result = await check_dkim(dns_resolver, "hosted.test", DEFAULT_DKIM_SELECTORS["microsoft"])

    assert result.status == "pass", result.message
    selectors = result.details["selectors"]
    assert isinstance(selectors, list)
    assert selectors[0]["canonicalName"] == "keys.esp.test"


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("v=DKIM1; k=rsa; p=", "revoked"),
        ("v=DKIM1; k=rsa; p=not base64!", "not valid base64"),
        ("v=DKIM1; k=dsa; p=AAAA", "unsupported key type"),
        ("v=DKIM1; k=ed25519; p=AAAA", "32-byte"),
        ("k=rsa; v=DKIM1; p=AAAA", "first tag"),
        ("v=DKIM1; k=rsa", "no p= tag"),
    ],
)
async def test_unusable_dkim_records_fail(
    dns_zone: Zone, dns_resolver: Resolver, record: str, fragment: str
) -> None:
    dns_zone.set_records("k1._domainkey.bad.test", "TXT", [record])

    result = await check_dkim(dns_resolver, "bad.test", ["k1"])

    assert result.status == "fail"
    assert fragment in result.message


async def test_dkim_missing_fails_but_timed_out_selectors_are_unknown(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    missing = await check_dkim(dns_resolver, "nokey.test", ["s1", "s2"])
    dns_zone.set_failure("s1._domainkey.nokey.test", "servfail")
    partly_unknown = await check_dkim(dns_resolver, "nokey.test", ["s1", "s2"])

    assert missing.status == "fail"
    assert "No DKIM key found" in missing.message
    assert partly_unknown.status == "unknown"
    assert "s1" in partly_unknown.message


# ------------------------------------------------------------------------ DMARC


async def test_dmarc_p_none_warns(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("_dmarc.watch.test", "TXT", ["v=DMARC1; p=none; rua=mailto:r@watch.test"])

    result = await check_dmarc(dns_resolver, "watch.test")

    assert result.status == "warn"
    assert "p=none" in result.message
    assert result.details["policy"] == "none"


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ("v=DMARC1; p=maybe", "p=maybe"),
        ("v=DMARC1; p=reject; pct=150", "pct=150"),
        ("v=DMARC1; p=reject; rua=https://report.test", "not a mailto"),
        ("v=DMARC1; p=reject; adkim=x", "adkim=x"),
        ("v=DMARC1; p=reject; sp=all", "sp=all"),
        ("v=DMARC1; p=reject; fo=2", "fo=2"),
        ("v=DMARC1; p=reject; ri=soon", "ri=soon"),
        ("v=DMARC1; p=reject; p=none", "more than once"),
        ("v=DMARC1; rua=mailto:r@x.test", "p= tag is missing"),
        ("v=dmarc1; p=reject", "v=DMARC1"),
    ],
)
async def test_invalid_dmarc_fails(
    dns_zone: Zone, dns_resolver: Resolver, record: str, fragment: str
) -> None:
    dns_zone.set_records("_dmarc.invalid.test", "TXT", [record])

    result = await check_dmarc(dns_resolver, "invalid.test")

    assert result.status == "fail"
    assert fragment in result.message


async def test_dmarc_missing_fails(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("_dmarc.other.test", "TXT", ["unrelated"])

    absent = await check_dmarc(dns_resolver, "nodmarc.test")
    unrelated = await check_dmarc(dns_resolver, "other.test")

    assert (absent.status, absent.message) == ("fail", "nodmarc.test has no DMARC record.")
    assert unrelated.status == "fail"


async def test_dmarc_multiple_records_fail(dns_zone: Zone, dns_resolver: Resolver) -> None:
    dns_zone.set_records("_dmarc.dup.test", "TXT", ["v=DMARC1; p=reject", "v=DMARC1; p=none"])

    result = await check_dmarc(dns_resolver, "dup.test")

    assert result.status == "fail"
    assert "multiple DMARC records" in result.message


async def test_dmarc_falls_back_to_organizational_domain(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    dns_zone.set_records("_dmarc.org.test", "TXT", ["v=DMARC1; p=none; sp=reject"])

    result = await check_dmarc(dns_resolver, "mail.sub.org.test")

    assert result.status == "pass", result.message
    assert result.details["inherited"] is True
    assert result.details["policy"] == "reject"
    assert "organizational domain org.test" in result.message


async def test_dmarc_partial_pct_and_unknown_tags_warn(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    dns_zone.set_records("_dmarc.part.test", "TXT", ["v=DMARC1; p=quarantine; pct=50; pc=1"])

    result = await check_dmarc(dns_resolver, "part.test")

    assert result.status == "warn"
    assert "pct=50" in result.message
    assert "pc" in result.message


# --------------------------------------------------------------------- resolver


async def test_answers_too_big_for_udp_arrive_over_tcp(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    text = "x" * 1500
    dns_zone.set_records("big.test", "TXT", [text])

    result = await lookup_txt(dns_resolver, "big.test")

    assert result.records == (text,)
    assert [protocol for name, _, protocol in dns_zone.queries if name == "big.test"] == [
        "udp",
        "tcp",
    ]


def test_nameserver_forms() -> None:
    assert parse_nameserver("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_nameserver("192.0.2.1:5353") == ("192.0.2.1", 5353)
    assert parse_nameserver("::1", 54) == ("::1", 54)
    assert parse_nameserver("[2001:db8::1]:5300") == ("2001:db8::1", 5300)
    assert parse_nameserver("[::1]") == ("::1", 53)


@pytest.mark.parametrize("bad", ["", "ns1.example.test", "192.0.2.1:0", "192.0.2.1:x", "[::1"])
def test_bad_nameservers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        make_resolver([bad])


async def test_nameservers_on_different_ports(
    dns_zone: Zone, silent_dns_server: SilentDnsServer
) -> None:
    dns_zone.set_records("ports.test", "TXT", ["hello"])
    # The silent server comes first: the lookup must fail over to the one that answers.
    resolver = make_resolver([silent_dns_server.nameserver, dns_zone.nameserver], timeout=2.0)
    resolver.timeout = 0.2

    result = await lookup_txt(resolver, "ports.test")

    assert result.records == ("hello",)


async def test_dmarc_fallback_stops_at_the_registrable_domain(
    dns_zone: Zone, dns_resolver: Resolver
) -> None:
    """The organizational domain comes from the Public Suffix List: the fallback of
    mail.example.co.uk is example.co.uk, never the public suffix co.uk."""
    dns_zone.set_records("_dmarc.co.uk", "TXT", ["v=DMARC1; p=none"])
    dns_zone.set_records("_dmarc.example.co.uk", "TXT", ["v=DMARC1; p=reject"])
    dns_zone.set_records("_dmarc.co.jp", "TXT", ["v=DMARC1; p=none"])

    inherited = await check_dmarc(dns_resolver, "mail.example.co.uk")
    orphan = await check_dmarc(dns_resolver, "example.co.jp")

    assert (inherited.status, inherited.details["policyDomain"]) == ("pass", "example.co.uk")
    assert inherited.details["policy"] == "reject"
    assert orphan.status == "fail", orphan.message
    assert orphan.details["policyDomain"] == "example.co.jp"
