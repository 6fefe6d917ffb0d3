"""Domain names: IDNA 2008 with UTS 46 mapping everywhere, never Python's IDNA 2003
codec (which turns `faß.de` into `fass.de`, another domain)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailfleet.dns.records import RecordError, record_name, to_ascii_domain
from mailfleet.dns.resolver import normalize_name
from mailfleet.kit.names import ascii_name, registrable_domain, unicode_name
from mailfleet.kit.netguard import INVALID_TARGET, NetguardError, guard_host
from mailfleet.kit.validation import normalize_hostname
from mailfleet.mail.discovery import parse_autoconfig


def test_ascii_name_maps_by_uts46_not_idna_2003() -> None:
    assert ascii_name("faß.de") == "xn--fa-hia.de"
    assert ascii_name("FASS.de") == "fass.de"
    assert ascii_name("Bücher.Example.") == "xn--bcher-kva.example"
    # Full-width letters and the ideographic full stop are mapped, as browsers do.
    assert ascii_name("ｅｘａｍｐｌｅ。com") == "example.com"
    assert ascii_name("XN--FA-HIA.de") == "xn--fa-hia.de"
    # ASCII labels pass as they are: record names have underscores.
    assert ascii_name("s1._domainkey.Example.com") == "s1._domainkey.example.com"
    assert unicode_name("xn--fa-hia.de") == "faß.de"


@pytest.mark.parametrize(
    "name", ["xn--zz.com", "xn--a.com", "a..com", "", ".", "a" * 64 + ".com", "x." * 127 + "com"]
)
def test_ascii_name_refuses_what_is_not_a_name(name: str) -> None:
    with pytest.raises(ValueError, match=r"name|label"):
        ascii_name(name)


NORMALISERS: dict[str, Callable[[str], str]] = {
    "domains": lambda name: to_ascii_domain(name)[0],
    "record names": lambda name: record_name(name + ".", name.rsplit(".", 1)[-1]),
    "mailbox hosts": normalize_hostname,
    "dns lookups": normalize_name,
}


@pytest.mark.parametrize("normalise", NORMALISERS.values(), ids=NORMALISERS.keys())
def test_every_normaliser_keeps_sharp_s_and_refuses_bad_a_labels(
    normalise: Callable[[str], str],
) -> None:
    assert normalise("faß.de") == "xn--fa-hia.de"
    with pytest.raises((ValueError, RecordError)):
        normalise("xn--zz.com")


def test_to_ascii_domain_gives_the_display_form() -> None:
    assert to_ascii_domain("FAß.de") == ("xn--fa-hia.de", "faß.de")


async def test_netguard_refuses_an_invalid_a_label() -> None:
    with pytest.raises(NetguardError) as caught:
        await guard_host("xn--zz.invalid", allow_private=False)
    assert caught.value.code == INVALID_TARGET


def test_discovery_keeps_sharp_s_in_autoconfig_hosts() -> None:
    document = """<?xml version="1.0"?><clientConfig version="1.1"><emailProvider id="x">
      <incomingServer type="imap"><hostname>imap.faß.de</hostname><port>993</port>
        <socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>
      <outgoingServer type="smtp"><hostname>smtp.faß.de</hostname><port>465</port>
        <socketType>SSL</socketType><username>%EMAILADDRESS%</username></outgoingServer>
    </emailProvider></clientConfig>"""
    imap, smtp = parse_autoconfig(document.encode(), "xn--fa-hia.de")
    assert imap is not None
    assert smtp is not None
    assert (imap.host, smtp.host) == ("imap.xn--fa-hia.de", "smtp.xn--fa-hia.de")


def test_registrable_domain_follows_the_public_suffix_list() -> None:
    assert registrable_domain("mail.example.co.uk") == "example.co.uk"
    assert registrable_domain("co.uk") is None
    assert registrable_domain("a.b.example.test") == "example.test"
