"""Webhook SSRF guards: address and URL checks, guarded sessions, connect-time socket guard."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from service.errors import FieldValidationError
from service.webhooks import ssrf
from tests.webhook_helpers import PUBLIC_IP, NoConnect, Receiver, StaticResolver, post

# --- SSRF: real loopback receivers behind a guarded session ----------------------------------


async def test_guard_refuses_loopback_literal(
    receiver: Receiver, guarded: aiohttp.ClientSession
) -> None:
    result = await post(guarded, receiver.url("/ok"))
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert "destination 127.0.0.1 is not allowed" in result.error
    assert receiver.hits == []


async def test_guard_refuses_name_resolving_to_loopback(receiver: Receiver) -> None:
    resolver = StaticResolver({"hooks.test": [["127.0.0.1"]]})
    async with ssrf.make_client_session(allow_private=False, resolver=resolver) as client:
        result = await post(client, receiver.url("/ok").replace("127.0.0.1", "hooks.test"))
    assert result.error is not None
    assert "destination 127.0.0.1 is not allowed" in result.error
    assert receiver.hits == []


async def test_guard_refuses_ipv6_loopback(
    receiver_v6: Receiver, guarded: aiohttp.ClientSession
) -> None:
    result = await post(guarded, receiver_v6.url("/ok"))
    assert not result.ok
    assert result.error is not None
    assert "destination ::1 is not allowed" in result.error
    assert receiver_v6.hits == []


# --- SSRF: addresses and URLs ----------------------------------------------------------------

FORBIDDEN = [
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.1", "192.0.0.8",
    "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.1", "198.51.100.7",
    "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::1", "100::1", "2001::1", "2001:0:4136::1",
    "2001:db8::1", "2002:a00:1::1", "2002:7f00:1::1", "fc00::1", "fd00:ec2::254", "fe80::1",
    "fec0::1", "ff02::1", "ff0e::1",
]  # fmt: skip
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses(address: str) -> None:
    assert ssrf.is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses(address: str) -> None:
    assert not ssrf.is_forbidden_address(ipaddress.ip_address(address))


REFUSED_URLS = [
    "http://127.0.0.1/", "http://localhost/", "http://localhost./", "http://[::1]/",
    "http://0.0.0.0/", "http://0/", "http://127.1/", "http://2130706433/", "http://0x7f000001/",
    "http://017700000001/", "http://0177.0.0.1/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/", "http://metadata.google.internal/", "http://printer.local/",
    "http://app.localhost/", "http://intranet/", "http://10.0.0.1/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://100.64.0.1/", "http://198.18.0.1/", "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/", "http://[fc00::1]/", "http://255.255.255.255/",
    "http://[64:ff9b::a00:1]/", "http://127。0。0。1/", "file:///etc/passwd", "gopher://x.com/",
    "ftp://example.com/", "dict://example.com/", "//example.com/", "example.com",
    "http://evil.com@127.0.0.1/", "http://user:pw@example.com/", "http://127.0.0.1#@evil.com/",
    "http://127.0.0.1%2523@evil.com", "http://example.com/\r\nX: y", "http://exa mple.com/",
    "http://example.com:0/", "http://example.com:99999/", "http://1.2.3.256/",
    "http://example.123/", "http://[::1/", "http://" + "a" * 3000 + ".com/",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_validate_refuses(url: str) -> None:
    with pytest.raises(FieldValidationError) as caught:
        ssrf.validate_webhook_url(url, allow_http=True, allow_private=False)
    assert list(caught.value.errors) == ["url"]
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://example.com/hook", "https://example.com/hook"),
        ("HTTPS://Example.COM:8443/a/../b?x=1", "https://example.com:8443/b?x=1"),
        ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),
        ("http://134744072/", "http://8.8.8.8/"),
        ("https://[2606:4700::1111]/", "https://[2606:4700::1111]/"),
    ],
)
def test_validate_accepts_and_normalizes(url: str, normalized: str) -> None:
    assert ssrf.validate_webhook_url(url, allow_http=True, allow_private=False) == normalized


def test_validate_http_and_private_switches() -> None:
    with pytest.raises(FieldValidationError, match="must use https"):
        ssrf.validate_webhook_url("http://example.com/", allow_http=False, allow_private=False)
    local = ssrf.validate_webhook_url("http://0x7f.1:8080/x", allow_http=True, allow_private=True)
    assert local == "http://127.0.0.1:8080/x"
    named = ssrf.validate_webhook_url("http://localhost:81/", allow_http=True, allow_private=True)
    assert named == "http://localhost:81/"


@pytest.mark.parametrize(
    "text", ["127.1", "0x7f.1", "0177.0.0.1", "2130706433", "0", "1.2.3.4", "0x7f000001",
             "017700000001", "1.2.65535", "1.2.3.256", "1.2.3.4.5", "08.1.1.1", "4294967296"],
)  # fmt: skip
def test_legacy_ipv4_matches_inet_aton(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert ssrf.parse_legacy_ipv4(text) == expected


# --- SSRF: resolved names and literals, never connected ---------------------------------------

PRIVATE_TARGETS = [
    "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "fd00::1", "fe80::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe",
]  # fmt: skip


@pytest.mark.parametrize("address", PRIVATE_TARGETS)
async def test_guarded_session_refuses_names_resolving_privately(
    address: str, no_connect: NoConnect
) -> None:
    resolver = StaticResolver({"internal.test": [[address]]})
    async with ssrf.make_client_session(
        allow_private=False, resolver=resolver, socket_factory=no_connect
    ) as client:
        result = await post(client, "http://internal.test/hook")
    assert result.error is not None
    assert "is not allowed" in result.error
    assert no_connect.attempts == []


@pytest.mark.parametrize("address", PRIVATE_TARGETS)
async def test_connect_time_guard_alone_refuses(address: str, no_connect: NoConnect) -> None:
    resolver = StaticResolver({"internal.test": [[address]]})
    connector = aiohttp.TCPConnector(
        resolver=resolver, socket_factory=ssrf.GuardedSocketFactory(no_connect)
    )
    async with aiohttp.ClientSession(connector=connector) as client:
        result = await post(client, "http://internal.test/hook")
    assert result.error is not None
    assert "is not allowed" in result.error
    assert no_connect.attempts == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.5/", "destination 10.0.0.5 is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", "destination 169.254.169.254 is not allowed"),
        ("http://[fd00:ec2::254]/", "destination fd00:ec2::254 is not allowed"),
        ("http://[::ffff:192.168.0.1]:8080/", "destination ::ffff:c0a8:1 is not allowed"),
        # aiohttp hands this form to the resolver, and getaddrinfo answers like inet_aton:
        ("http://0x7f.1/", "destination 127.0.0.1 is not allowed"),
        # ...and refuses this one itself.
        ("http://2130706433/", "is not a canonical IPv4 address"),
    ],
)
async def test_guarded_session_refuses_literals(
    url: str, reason: str, no_connect: NoConnect
) -> None:
    resolver = StaticResolver({"0x7f.1": [["127.0.0.1"]]})  # no real DNS in this test
    async with ssrf.make_client_session(
        allow_private=False, resolver=resolver, socket_factory=no_connect
    ) as client:
        result = await post(client, url)
    assert result.error is not None
    assert reason in result.error
    assert no_connect.attempts == []


async def test_one_private_answer_refuses_the_name(no_connect: NoConnect) -> None:
    resolver = StaticResolver({"mixed.test": [[PUBLIC_IP, "10.0.0.1"]]})
    async with ssrf.make_client_session(
        allow_private=False, resolver=resolver, socket_factory=no_connect
    ) as client:
        result = await post(client, "http://mixed.test/")
    assert result.error is not None
    assert "destination 10.0.0.1 is not allowed" in result.error
    assert no_connect.attempts == []


async def test_rebinding_after_a_check_is_refused(no_connect: NoConnect) -> None:
    resolver = StaticResolver({"rebind.test": [[PUBLIC_IP], ["169.254.169.254"]]})
    # A naive check-then-connect validator would see the public answer here...
    [first] = await resolver.resolve("rebind.test", 80)
    assert not ssrf.is_forbidden_address(ipaddress.ip_address(first["host"]))
    # ...and then the delivery's own lookup returns the metadata address.
    async with ssrf.make_client_session(
        allow_private=False, resolver=resolver, socket_factory=no_connect
    ) as client:
        result = await post(client, "http://rebind.test/")
    assert result.error is not None
    assert "destination 169.254.169.254 is not allowed" in result.error
    assert no_connect.attempts == []


async def test_connect_time_guard_checks_each_connected_address(no_connect: NoConnect) -> None:
    resolver = StaticResolver({"rebind.test": [[PUBLIC_IP], ["169.254.169.254"]]})
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        use_dns_cache=False,
        socket_factory=ssrf.GuardedSocketFactory(no_connect),
    )
    async with aiohttp.ClientSession(connector=connector) as client:
        first = await post(client, "http://rebind.test/")
        second = await post(client, "http://rebind.test/")
    assert resolver.lookups == 2
    assert first.error is not None
    assert "outbound connect suppressed" in first.error  # allowed by the guard, stopped by the test
    assert second.error is not None
    assert "destination 169.254.169.254 is not allowed" in second.error
    assert no_connect.attempts == [PUBLIC_IP]


def test_socket_factory_creates_sockets_for_public_addresses_only() -> None:
    factory = ssrf.GuardedSocketFactory()
    with factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, 443))) as sock:
        assert sock.family == socket.AF_INET  # created, never connected
    with pytest.raises(ssrf.ForbiddenDestination):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 443, 0, 0)))
    with pytest.raises(ssrf.ForbiddenDestination):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("not-an-ip", 443)))
