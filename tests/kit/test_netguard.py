"""The guard's own tests run with private networks refused, as in production.

Only loopback names, IP literals and the reserved `.invalid` TLD are used: these
machines have no internet access and tests must never depend on it.
"""

import ipaddress

import pytest

from mailfleet.kit.netguard import (
    FORBIDDEN_TARGET,
    HOST_NOT_FOUND,
    INVALID_TARGET,
    NetguardError,
    guard_host,
    guard_url,
    is_forbidden_address,
)

FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "127.1",  # inet_aton shorthand, caught after resolution
    "2130706433",  # 127.0.0.1 as one decimal number
    "::1",
    "[::1]",
    "localhost",
    "LOCALHOST.",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "224.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    "100.64.0.1",
    "100.127.255.254",
    "fe80::1",
    "fe80::1%1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "240.0.0.1",
    "192.0.2.1",
]

PUBLIC_LITERALS = [
    "93.184.216.34",
    "8.8.8.8",
    "100.128.0.1",
    "2606:4700::1",
    "[2606:4700::1]",
    "::ffff:93.184.216.34",
    "2002:5db8:d822::1",  # 6to4 around 93.184.216.34
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
async def test_non_public_targets_are_refused(host: str) -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_host(host, allow_private=False)
    error = excinfo.value
    assert error.code == FORBIDDEN_TARGET
    assert host.strip("[]") in str(error)
    assert error.address is not None
    assert error.address in str(error)
    # A newcomer trying local mail servers learns which setting lets them through.
    assert "MAILFLEET_ALLOW_PRIVATE_NETWORKS=true" in error.message


@pytest.mark.parametrize("host", PUBLIC_LITERALS)
async def test_public_literals_are_accepted_without_network(host: str) -> None:
    addresses = await guard_host(host, allow_private=False)
    assert addresses == [ipaddress.ip_address(host.strip("[]"))]


async def test_allow_private_accepts_loopback() -> None:
    assert await guard_host("127.0.0.1", allow_private=True) == [ipaddress.ip_address("127.0.0.1")]
    assert await guard_host("::1", allow_private=True) == [ipaddress.ip_address("::1")]
    addresses = await guard_host("localhost", allow_private=True)
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert len(addresses) == len(set(addresses))
    assert all(ip.is_loopback for ip in addresses)


@pytest.mark.parametrize("allow_private", [False, True])
async def test_unresolvable_name_is_host_not_found(allow_private: bool) -> None:
    host = "no-such-host.mailfleet-test.invalid"
    with pytest.raises(NetguardError) as excinfo:
        await guard_host(host, allow_private=allow_private, timeout=10)
    assert excinfo.value.code == HOST_NOT_FOUND
    assert host in str(excinfo.value)


async def test_internationalised_name_is_idna_encoded_before_lookup() -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_host("bücher.invalid", allow_private=True, timeout=10)
    assert excinfo.value.code == HOST_NOT_FOUND
    assert "bücher.invalid" in str(excinfo.value)


@pytest.mark.parametrize(
    "host",
    ["", ".", "a..b", "exa mple.com", "evil.com/path", "user@host", "-lead.example", "a" * 64],
)
async def test_malformed_hosts_are_invalid(host: str) -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_host(host, allow_private=True)
    assert excinfo.value.code == INVALID_TARGET


async def test_invalid_host_message_escapes_control_characters() -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_host("evil\r\nX-Injected: 1", allow_private=True)
    assert excinfo.value.code == INVALID_TARGET
    assert "\n" not in str(excinfo.value)


def test_is_forbidden_address() -> None:
    for text in ["127.0.0.1", "169.254.169.254", "100.64.0.1", "::ffff:10.0.0.1", "::1"]:
        assert is_forbidden_address(ipaddress.ip_address(text))
    for text in ["93.184.216.34", "2606:4700::1", "::ffff:8.8.8.8"]:
        assert not is_forbidden_address(ipaddress.ip_address(text))


async def test_guard_url_returns_the_host() -> None:
    assert await guard_url("https://93.184.216.34/hook", allow_private=False) == "93.184.216.34"
    assert await guard_url("HTTP://[2606:4700::1]:8080/x?y=1", allow_private=False) == (
        "2606:4700::1"
    )
    assert await guard_url("http://localhost:8025/", allow_private=True) == "localhost"


@pytest.mark.parametrize(
    ("url", "require_https"),
    [
        ("ftp://93.184.216.34/file", False),
        ("file:///etc/passwd", False),
        ("93.184.216.34/hook", False),
        ("https://user:s3cr3t@93.184.216.34/?token=s3cr3t", False),
        ("https://s3cr3t@93.184.216.34/", False),
        ("https:///path-only", False),
        ("https://", False),
        ("http://93.184.216.34:99999/", False),
        ("http://93.184.216.34:0/", False),
        ("http://93.184.216.34\t/", False),
        ("http://93.184.216.34/hook?token=s3cr3t", True),
    ],
)
async def test_guard_url_rejects_malformed_urls(url: str, require_https: bool) -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_url(url, allow_private=True, require_https=require_https)
    assert excinfo.value.code == INVALID_TARGET
    assert "s3cr3t" not in str(excinfo.value)


async def test_guard_url_applies_the_host_guard() -> None:
    with pytest.raises(NetguardError) as excinfo:
        await guard_url("http://169.254.169.254/latest/meta-data/", allow_private=False)
    assert excinfo.value.code == FORBIDDEN_TARGET
    with pytest.raises(NetguardError) as excinfo:
        await guard_url("https://localhost/", allow_private=False)
    assert excinfo.value.code == FORBIDDEN_TARGET
