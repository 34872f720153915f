"""Webhook delivery test pieces: a recording loopback receiver, lenient settings, API calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.config import Settings
from service.webhooks import events
from tests.conftest import bearer

URL = "/business/webhooks"


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["X-Webhook-ID"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request as it arrives; ``answered`` those it answered with a 2xx."""

    base_url: str = ""
    hits: list[Hit] = field(default_factory=list)
    answered: list[Hit] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def on(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        hit = Hit(request.path, dict(request.headers), await request.read())
        self.hits.append(hit)
        response = await self.behave(request, hit)
        if response.status < 300:
            self.answered.append(hit)
        return response

    async def behave(self, request: web.Request, hit: Hit) -> web.Response:
        match request.match_info["name"]:
            case "flaky" if len([h for h in self.hits if h.id == hit.id]) == 1:
                return web.Response(status=500, text="try again")
            case "fail":
                return web.Response(status=500, text="boom\x00" + "x" * 5000)
            case "gone":
                return web.Response(status=410)
            case "redirect":
                raise web.HTTPFound("/target")
            case "hang":
                await asyncio.sleep(10)  # cancelled when the client gives up
            case "slow":
                await asyncio.sleep(0.4)
        return web.Response(text="ok")


async def serve(host: str) -> tuple[web.AppRunner, Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{name}", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    port = runner.addresses[0][1]
    receiver.base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    return runner, receiver


def lenient(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workers": 4,
        "poll_interval_s": 0.1,
        "webhooks_allow_private": True,
        "webhooks_allow_http": True,
        "webhook_retry_schedule_s": (1, 1),
        "webhook_timeout_s": 2.0,
    }
    return settings.with_overrides(**{**values, **overrides})


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if await result if asyncio.iscoroutine(result) else result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def register(
    client: TestClient, token: str, url: str, subscribed: tuple[str, ...] = events.EVENTS
) -> dict[str, Any]:
    body = {"url": url, "events": list(subscribed)}
    response = await client.post(URL, json=body, headers=bearer(token))
    assert response.status == 201, await response.text()
    data: dict[str, Any] = (await response.json())["data"]
    return data


async def ping(client: TestClient, token: str, endpoint_id: str) -> str:
    response = await client.post(f"{URL}/{endpoint_id}/test", headers=bearer(token))
    assert response.status == 202, await response.text()
    delivery_id: str = (await response.json())["data"]["delivery_id"]
    return delivery_id


async def attempts(client: TestClient, token: str, endpoint_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"{URL}/{endpoint_id}/deliveries", headers=bearer(token))
    items: list[dict[str, Any]] = (await response.json())["data"]
    return items[::-1]  # oldest first


async def endpoint(client: TestClient, token: str, endpoint_id: str) -> dict[str, Any]:
    data: dict[str, Any] = (
        await (await client.get(f"{URL}/{endpoint_id}", headers=bearer(token))).json()
    )["data"]
    return data


async def _logged(client: TestClient, token: str, endpoint_id: str, count: int) -> bool:
    return len(await attempts(client, token, endpoint_id)) >= count


async def _no_jobs(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT count(*) FROM jobs") == 0
