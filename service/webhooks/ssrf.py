"""SSRF guards for webhook URLs: checked at registration, and again on every address connected to.

``GuardedSocketFactory`` uses aiohttp's public ``socket_factory`` hook, which sees the address of
every connect (IP literals included: they skip the resolver), so no private connector method is
overridden and DNS rebinding cannot slip past an earlier check; ``GuardedResolver`` fails early.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from service.errors import FieldValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048

# Explicit deny lists on top of ``is_global``, whose ranges are incomplete before CPython's
# CVE-2024-4032 fix (3.11.7 calls multicast, 192.0.0.0/24, fec0::/10 and 6to4 "global").
_DENIED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
# ::/96 (IPv4-compatible, incl. :: and ::1), NAT64 local-use, discard, IETF protocol space with
# Teredo, documentation, 6to4, ULA, link-local, site-local, multicast.
_DENIED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
        "3fff::/20", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_LEGACY_V4_PART = re.compile(r"0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*")


class ForbiddenDestination(OSError):
    """A webhook target resolved to (or is) an address the service must not connect to."""


def is_forbidden_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is anything but a globally routable unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_address(embedded)
        denied: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = _DENIED_V6
    else:
        denied = _DENIED_V4
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return True
    return any(ip in net for net in denied)


def check_address(host: str) -> None:
    """Raise ForbiddenDestination unless ``host`` is a public IP address (fails closed)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ForbiddenDestination(f"destination {host!r} is not an IP address") from None
    if is_forbidden_address(ip):
        raise ForbiddenDestination(
            f"destination {ip} is not allowed (private, loopback, link-local or reserved address)"
        )


def validate_webhook_url(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """The normalized URL, or FieldValidationError("url", ...) when it may not be a webhook target.

    IP literals in any spelling (decimal, octal, hex, short, IPv6, IPv4-mapped) are parsed and
    rewritten to their canonical form; names are checked again when they are connected to.
    """
    parsed = _parse_url(url, allow_http=allow_http)
    host = parsed.raw_host or ""
    ip = _host_ip(host)
    if ip is not None:
        if not allow_private and is_forbidden_address(ip):
            raise _invalid("The url must not point to a private, loopback or reserved address.")
        return str(parsed.with_host(str(ip)))
    _check_host_name(host.removesuffix("."), allow_private=allow_private)
    return str(parsed)


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` and refuses the name if any answer is a forbidden address.

    A second line of defence with a clear error before any connect: the socket factory below is
    what checks literals and every address actually connected to.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            check_address(answer["host"])
        return answers

    async def close(self) -> None:
        await self._inner.close()


class GuardedSocketFactory:
    """aiohttp socket factory that refuses forbidden addresses before any socket exists.

    ``inner`` creates the socket for allowed addresses (tests pass one that never connects).
    """

    def __init__(self, inner: SocketFactoryType | None = None) -> None:
        self._inner = inner

    def __call__(self, addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _canonname, sockaddr = addr_info
        check_address(str(sockaddr[0]))
        if self._inner is not None:
            return self._inner(addr_info)
        return socket.socket(family=family, type=type_, proto=proto)


def make_connector(
    *,
    allow_private: bool,
    resolver: AbstractResolver | None = None,
    socket_factory: SocketFactoryType | None = None,
) -> aiohttp.TCPConnector:
    """A TCPConnector whose names and connections are guarded unless private targets are allowed.

    The caller keeps ownership of ``resolver`` (the connector does not close it).
    """
    inner = resolver or aiohttp.ThreadedResolver()
    if not allow_private:
        inner = GuardedResolver(inner)
        socket_factory = GuardedSocketFactory(socket_factory)
    return aiohttp.TCPConnector(
        resolver=inner, socket_factory=socket_factory, limit=64, limit_per_host=8
    )


def make_client_session(
    *,
    allow_private: bool,
    resolver: AbstractResolver | None = None,
    timeout_s: float = 10.0,
    socket_factory: SocketFactoryType | None = None,
) -> aiohttp.ClientSession:
    """The one session webhook deliveries use: guarded, no proxies from the environment, no cookies.

    Compression is off (``Accept-Encoding: identity``) so the response cap counts bytes on the wire.
    """
    return aiohttp.ClientSession(
        connector=make_connector(
            allow_private=allow_private, resolver=resolver, socket_factory=socket_factory
        ),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 (64:ff9b::/96) address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _parse_url(url: str, *, allow_http: bool) -> URL:
    if len(url) > MAX_URL_CHARS:
        raise _invalid(f"The url must not be greater than {MAX_URL_CHARS} characters.")
    # yarl silently drops CR/LF and tabs; refuse them (and spaces) instead of guessing.
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise _invalid("The url must not contain spaces or control characters.")
    try:
        parsed = URL(url)
    except ValueError:
        raise _invalid("The url is not a valid URL.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in schemes:
        raise _invalid("The url must use " + " or ".join(schemes) + ".")
    _check_authority(parsed)
    return parsed


def _check_authority(parsed: URL) -> None:
    if not parsed.raw_host:
        raise _invalid("The url must include a host.")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise _invalid("The url must not contain a user name or password.")
    if parsed.explicit_port == 0:
        raise _invalid("The url must not use port 0.")
    if parsed.raw_fragment:
        raise _invalid("The url must not contain a fragment.")


def _host_ip(host: str) -> IPAddress | None:
    """The address an IP-literal host stands for, in any spelling; None for a name."""
    if ":" in host:
        if "%" in host:
            raise _invalid("The url must not contain an IPv6 zone identifier.")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _invalid("The url host is not a valid IPv6 address.") from None
    bare = host.removesuffix(".")
    if not _NUMERIC_LABEL.fullmatch(bare.rsplit(".", 1)[-1]):
        return None
    # A name whose last label is numeric is an IPv4 address to URL parsers and to inet_aton.
    ip = parse_legacy_ipv4(bare)
    if ip is None:
        raise _invalid("The url host is not a valid IP address.")
    return ip


def parse_legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 the way ``inet_aton`` does (1-4 parts, decimal, 0-octal, 0x-hex), or None."""
    parts = text.lower().split(".")
    if not 1 <= len(parts) <= 4 or not all(_LEGACY_V4_PART.fullmatch(part) for part in parts):
        return None
    values = [_legacy_int(part) for part in parts]
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 256 ** (5 - len(parts)):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _legacy_int(part: str) -> int:
    if part.startswith("0x"):
        return int(part[2:], 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def _check_host_name(name: str, *, allow_private: bool) -> None:
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or len(name) > 253:
        raise _invalid("The url host is not a valid host name.")
    if allow_private:
        return
    if len(labels) < 2 or name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
        raise _invalid("The url must point to a public host name, not a local one.")


def _invalid(message: str) -> FieldValidationError:
    return FieldValidationError.single("url", message)
