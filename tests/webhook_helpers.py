"""Shared webhook transport test pieces: loopback receivers, sessions, never-connecting doubles."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from service.webhooks import sender, ssrf

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
