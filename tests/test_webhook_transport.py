"""Webhook transport: signatures, delivery outcomes against real loopback receivers, SSRF guards.

Safety: no test sends a packet beyond loopback. Non-loopback targets only ever reach ``NoConnect``,
a socket factory that records the address and raises instead of creating a socket.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import random
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from service.errors import FieldValidationError
from service.webhooks import sender, signing, ssrf

PUBLIC_IP = "8.8.8.8"  # only ever handed to NoConnect


# --- receivers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


HITS = web.AppKey("hits", list[Hit])


@dataclass
class Receiver:
    base_url: str
    hits: list[Hit]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]


async def behave(request: web.Request) -> web.StreamResponse:
    match request.match_info["name"]:
        case "ok":
            return web.Response(text="thanks")
        case "no-content":
            return web.Response(status=204)
        case "fail":
            return web.Response(status=500, text="boom")
        case "gone":
            return web.Response(status=410)
        case "redirect":
            raise web.HTTPFound(request.url.with_path("/target"))
        case "busy":
            return web.Response(status=503, headers={"Retry-After": "120"})
        case "throttle":
            when = datetime.now(UTC) + timedelta(seconds=90)
            return web.Response(status=429, headers={"Retry-After": format_datetime(when, True)})
        case "hang":
            await asyncio.sleep(10)  # cancelled when the client gives up (handler_cancellation)
            return web.Response()
        case "endless":
            return await stream_endless(request)
    return web.Response(status=404)


async def stream_endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(2000):  # bounded anyway: 128 MiB at most
        try:
            await response.write(b"x" * 65536)
        except ConnectionError:
            break
    return response


async def record(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    request.app[HITS].append(Hit(request.path, dict(request.headers), body))
    return await behave(request)


async def start_receiver(host: str) -> tuple[web.AppRunner, Receiver]:
    app = web.Application()
    app[HITS] = []
    app.router.add_route("*", "/{name}", record)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return runner, Receiver(f"http://{shown}:{port}", app[HITS])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    runner, rx = await start_receiver("127.0.0.1")
    yield rx
    await runner.cleanup()


@pytest.fixture
async def receiver_v6() -> AsyncIterator[Receiver]:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    runner, rx = await start_receiver("::1")
    yield rx
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with ssrf.make_client_session(allow_private=True) as client:
        yield client


@pytest.fixture
async def guarded() -> AsyncIterator[aiohttp.ClientSession]:
    async with ssrf.make_client_session(allow_private=False) as client:
        yield client


# --- network doubles that can never leave the machine ----------------------------------------


@dataclass
class NoConnect:
    """Socket factory that records each address it is asked for and never creates a socket."""

    attempts: list[str] = field(default_factory=list)

    def __call__(self, addr_info: tuple[object, ...]) -> socket.socket:
        sockaddr = addr_info[4]
        assert isinstance(sockaddr, tuple)
        self.attempts.append(str(sockaddr[0]))
        raise OSError("test double: outbound connect suppressed")


class StaticResolver(AbstractResolver):
    """Answers each lookup of a name with the next list of addresses given for it."""

    def __init__(self, answers: dict[str, Sequence[Sequence[str]]]) -> None:
        self._answers = {name: iter(lists) for name, lists in answers.items()}
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        if host not in self._answers:
            raise OSError(f"test resolver: no answer for {host}")
        return [self._result(host, ip, port) for ip in next(self._answers[host])]

    @staticmethod
    def _result(host: str, ip: str, port: int) -> ResolveResult:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return {
            "hostname": host,
            "host": ip,
            "port": port,
            "family": family,
            "proto": 0,
            "flags": 0,
        }

    async def close(self) -> None:
        return None


@pytest.fixture
def no_connect() -> NoConnect:
    return NoConnect()


async def post(
    client: aiohttp.ClientSession,
    url: str,
    *,
    timeout_s: float = 10.0,
    max_response_bytes: int = 64,
) -> sender.DeliveryResult:
    return await sender.deliver(
        client,
        url=url,
        body=b"{}",
        headers={"Content-Type": "application/json"},
        timeout_s=timeout_s,
        max_response_bytes=max_response_bytes,
    )


# --- signing ---------------------------------------------------------------------------------


def test_new_secret_is_standard_webhooks_form() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_standard_signature_known_answer() -> None:
    signature = signing.standard_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp_s=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_body_signature_known_answer() -> None:
    # GitHub's published vector: the key is the secret string itself, as for our secrets.
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signing.body_signature("It's a Secret to Everybody", b"Hello, World!") == expected
    assert signing.verify_signature("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not signing.verify_signature("It's a Secret to Everybody", b"Hello, World?", expected)
    assert not signing.verify_signature("It's a Secret to Everybody", b"Hello, World!", "ü")


def test_sign_headers_shape_and_retry_semantics() -> None:
    secret, body = signing.new_secret(), b'{"a": 1}'
    first_at = datetime(2026, 3, 1, 12, 0, 5, 700000, tzinfo=UTC)
    first = signing.sign_headers(
        secret=secret, body=body, event="batch.done", delivery_id="dlv_1", timestamp=first_at
    )
    assert first == {
        "Content-Type": "application/json",
        "User-Agent": "vault-service-webhooks/1",
        "X-Webhook-Event": "batch.done",
        "X-Webhook-ID": "dlv_1",
        "X-Webhook-Timestamp": "2026-03-01T12:00:05Z",
        "X-Webhook-Signature": signing.body_signature(secret, body),
        "webhook-id": "dlv_1",
        "webhook-timestamp": str(int(first_at.timestamp())),
        "webhook-signature": first["webhook-signature"],
    }
    retry = signing.sign_headers(
        secret=secret,
        body=body,
        event="batch.done",
        delivery_id="dlv_1",
        timestamp=first_at + timedelta(minutes=1),
    )
    assert retry["webhook-id"] == first["webhook-id"]
    assert retry["webhook-timestamp"] != first["webhook-timestamp"]
    assert retry["webhook-signature"] != first["webhook-signature"]


@pytest.mark.parametrize(
    ("secret", "delivery_id", "timestamp"),
    [
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg.1", datetime.now(UTC)),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", datetime(2026, 1, 1)),
        ("whsec_not base64!", "msg_1", datetime.now(UTC)),
        ("whsec_", "msg_1", datetime.now(UTC)),
    ],
)
def test_sign_headers_rejects_bad_input(secret: str, delivery_id: str, timestamp: datetime) -> None:
    with pytest.raises(ValueError):
        signing.sign_headers(
            secret=secret, body=b"{}", event="e", delivery_id=delivery_id, timestamp=timestamp
        )


def test_signature_covers_exact_bytes() -> None:
    secret, body = signing.new_secret(), b'{"b":2,"a":1}'
    signature = signing.body_signature(secret, body)
    reserialised = json.dumps(json.loads(body), sort_keys=True).encode()
    assert not signing.verify_signature(secret, reserialised, signature)


async def test_receiver_verifies_the_delivery(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    secret, body = signing.new_secret(), b'{"event": "certificate_application.created", "n": 1}'
    headers = signing.sign_headers(
        secret=secret,
        body=body,
        event="certificate_application.created",
        delivery_id="dlv_01HZX",
        timestamp=datetime.now(UTC),
    )
    result = await sender.deliver(session, url=receiver.url("/ok"), body=body, headers=headers)
    assert result.ok
    [hit] = receiver.hits
    assert hit.body == body
    assert signing.verify_signature(secret, hit.body, hit.headers["X-Webhook-Signature"])
    assert hit.headers["X-Webhook-Signature"] == signing.body_signature(secret, hit.body)
    assert Webhook(secret).verify(hit.body, hit.headers) == json.loads(body)
    assert hit.headers["X-Webhook-ID"] == hit.headers["webhook-id"] == "dlv_01HZX"
    assert hit.headers["X-Webhook-Event"] == "certificate_application.created"
    assert hit.headers["User-Agent"] == "vault-service-webhooks/1"
    assert "Cookie" not in hit.headers


# --- delivery outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/ok", 200), ("/no-content", 204)])
async def test_2xx_is_success(
    receiver: Receiver, session: aiohttp.ClientSession, path: str, status: int
) -> None:
    result = await post(session, receiver.url(path))
    assert (result.ok, result.status, result.error, result.gone) == (True, status, None, False)
    assert result.duration_ms >= 0


async def test_500_is_failure_with_status(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/fail"))
    assert (result.ok, result.status, result.gone) == (False, 500, False)
    assert result.error == "unexpected status 500 Internal Server Error"
    assert result.response_excerpt == "boom"


async def test_410_is_gone(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    result = await post(session, receiver.url("/gone"))
    assert (result.ok, result.status, result.gone) == (False, 410, True)


async def test_redirect_is_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    result = await post(session, receiver.url("/redirect"))
    assert (result.ok, result.status) == (False, 302)
    assert result.error == f"redirect not followed (302 to {receiver.url('/target')})"
    assert receiver.paths() == ["/redirect"]


async def test_hanging_receiver_is_cut_at_the_timeout(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/hang"), timeout_s=0.5)
    assert (result.ok, result.status) == (False, None)
    assert result.error == "timed out after 0.5 s"
    assert 400 <= result.duration_ms < 3000


async def test_endless_response_is_read_up_to_the_cap(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/endless"), max_response_bytes=1000, timeout_s=5)
    assert (result.ok, result.status) == (True, 200)
    assert result.response_excerpt == "x" * 1000
    assert result.duration_ms < 3000


async def test_retry_after_seconds_and_date(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    busy = await post(session, receiver.url("/busy"))
    assert (busy.status, busy.retry_after_s) == (503, 120)
    throttled = await post(session, receiver.url("/throttle"))
    assert throttled.status == 429
    assert throttled.retry_after_s is not None
    assert 85 <= throttled.retry_after_s <= 91


def test_parse_retry_after_edge_cases() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert sender.parse_retry_after(None) is None
    assert sender.parse_retry_after("soon") is None
    assert sender.parse_retry_after("-5") is None
    assert sender.parse_retry_after(" 7 ") == 7
    assert sender.parse_retry_after("99999999") == sender.MAX_RETRY_AFTER_S
    assert sender.parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0
    assert sender.parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now=now) == 30


async def test_connection_refused_is_a_readable_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await post(session, f"http://127.0.0.1:{port}/ok")
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert result.error.startswith(f"connection to 127.0.0.1:{port} failed:")


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


# --- retry schedule --------------------------------------------------------------------------


def test_retry_schedule_with_jitter_and_exhaustion() -> None:
    rng = random.Random(7)
    schedule = sender.DEFAULT_RETRY_SCHEDULE_S
    for attempt, base in enumerate(schedule, start=1):
        for _ in range(50):
            delay = sender.next_retry_delay_s(attempt, rng=rng)
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2
    assert sender.next_retry_delay_s(len(schedule) + 1, rng=rng) is None
    assert 24 * 3600 <= sum(schedule) <= 30 * 3600
    assert sender.next_retry_delay_s(2, schedule=[5], rng=rng) is None
    with pytest.raises(ValueError):
        sender.next_retry_delay_s(0)


def test_retry_jitter_spreads() -> None:
    delays = {sender.next_retry_delay_s(3, rng=random.Random(seed)) for seed in range(20)}
    assert len(delays) == 20


def test_retry_after_combination() -> None:
    assert sender.with_retry_after(30.0, None) == 30.0
    assert sender.with_retry_after(30.0, 120) == 120.0
    assert sender.with_retry_after(600.0, 120) == 600.0
    assert sender.with_retry_after(None, 120) is None


async def test_tls_failure_is_a_readable_error(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/ok").replace("http://", "https://"))
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert result.error.startswith("TLS error:")
    assert receiver.hits == []


def test_socket_factory_creates_sockets_for_public_addresses_only() -> None:
    factory = ssrf.GuardedSocketFactory()
    with factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, 443))) as sock:
        assert sock.family == socket.AF_INET  # created, never connected
    with pytest.raises(ssrf.ForbiddenDestination):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1", 443, 0, 0)))
    with pytest.raises(ssrf.ForbiddenDestination):
        factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("not-an-ip", 443)))
