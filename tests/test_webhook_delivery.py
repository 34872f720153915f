"""Webhook deliveries end to end: the app's workers POST to real receivers on loopback.

Every target is 127.0.0.1 or ::1. Retries use a 1-second schedule so a retry takes a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook

from service import cli
from service.app import create_app
from service.config import Settings
from service.data import webhook_deliveries as delivery_data
from service.data import webhooks as webhook_data
from service.resources import FILES
from service.webhooks import events, signing
from tests.conftest import TokenFactory, bearer
from tests.samples import make_pdf
from tests.vault_helpers import BULK_URL, entry, single_form, start_worker, upload

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


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    runner, rx = await serve("127.0.0.1")
    yield rx
    await runner.cleanup()


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


@pytest.fixture
async def vault(
    settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    return await aiohttp_client(create_app(lenient(settings)))


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


async def test_ping_arrives_signed_both_ways(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/ok"))
    delivery_id = await ping(vault, token, hook["id"])
    await wait_for(lambda: receiver.answered)
    [hit] = receiver.hits
    assert signing.body_signature(hook["secret"], hit.body) == hit.headers["X-Webhook-Signature"]
    assert Webhook(hook["secret"]).verify(hit.body, hit.headers) == hit.json()
    assert hit.id == hit.headers["webhook-id"] == delivery_id
    assert hit.headers["X-Webhook-Event"] == "ping"
    assert hit.headers["Content-Type"] == "application/json"
    payload = hit.json()
    assert list(payload) == ["event", "webhook_id", "timestamp", "data"]
    assert payload["event"] == "ping" and payload["webhook_id"] == delivery_id
    assert payload["data"]["endpoint_id"] == hook["id"]
    assert time.strptime(payload["timestamp"], "%Y-%m-%dT%H:%M:%SZ")

    await wait_for(lambda: _logged(vault, token, hook["id"], 1))
    [logged] = await attempts(vault, token, hook["id"])
    assert logged["delivery_id"] == delivery_id and logged["event"] == "ping"
    assert (logged["attempt"], logged["status_code"], logged["error"]) == (1, 200, None)
    assert logged["delivery_status"] == "delivered" and logged["next_retry_at"] is None
    assert logged["response_excerpt"] == "ok" and logged["duration_ms"] >= 0
    assert (await endpoint(vault, token, hook["id"]))["last_success_at"] is not None


async def _logged(client: TestClient, token: str, endpoint_id: str, count: int) -> bool:
    return len(await attempts(client, token, endpoint_id)) >= count


async def test_a_500_is_retried_with_the_same_delivery_id(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/flaky"))
    delivery_id = await ping(vault, token, hook["id"])
    await wait_for(lambda: _logged(vault, token, hook["id"], 2))
    first, second = receiver.hits
    assert first.id == second.id == delivery_id
    assert first.body == second.body  # the same bytes on every attempt
    for hit in (first, second):
        assert Webhook(hook["secret"]).verify(hit.body, hit.headers)
    failed, delivered = await attempts(vault, token, hook["id"])
    assert (failed["attempt"], failed["status_code"]) == (1, 500)
    assert failed["error"] == "unexpected status 500 Internal Server Error"
    assert failed["next_retry_at"] is not None and failed["response_excerpt"] == "try again"
    assert (delivered["attempt"], delivered["status_code"]) == (2, 200)
    assert delivered["delivery_status"] == "delivered"
    health = await endpoint(vault, token, hook["id"])
    assert health["active"] and health["failing_since"] is None
    assert health["last_failure_at"] is not None


async def test_410_disables_the_endpoint(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/gone"))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _disabled(vault, token, hook["id"]))
    health = await endpoint(vault, token, hook["id"])
    assert health["disabled_reason"].startswith("410 Gone") and health["disabled_at"]
    [logged] = await attempts(vault, token, hook["id"])
    assert logged["status_code"] == 410 and logged["delivery_status"] == "failed"
    await asyncio.sleep(1.5)  # no retry comes
    assert len(receiver.hits) == 1
    assert (await vault.post(f"{URL}/{hook['id']}/test", headers=bearer(token))).status == 409
    await wait_for(lambda: _no_jobs(conn))


async def _disabled(client: TestClient, token: str, endpoint_id: str) -> bool:
    return not (await endpoint(client, token, endpoint_id))["active"]


async def _no_jobs(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_redirect_is_a_failure_and_is_not_followed(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/redirect"))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _logged(vault, token, hook["id"], 1))
    [logged] = await attempts(vault, token, hook["id"])
    assert logged["status_code"] == 302 and logged["delivery_status"] == "pending"
    assert logged["error"].startswith("redirect not followed (302 to")
    assert receiver.on("/target") == []


async def test_every_attempt_failing_ends_the_delivery_not_the_endpoint(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/fail"))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _logged(vault, token, hook["id"], 3))
    logged = await attempts(vault, token, hook["id"])
    assert [a["attempt"] for a in logged] == [1, 2, 3]
    assert [a["delivery_status"] for a in logged] == ["failed"] * 3  # the delivery's status now
    assert logged[-1]["next_retry_at"] is None
    assert len(logged[0]["response_excerpt"]) == 200 and "\x00" not in logged[0]["response_excerpt"]
    health = await endpoint(vault, token, hook["id"])
    assert health["active"] and health["failing_since"] is not None
    await wait_for(lambda: _no_jobs(conn))
    assert len(receiver.hits) == 3


async def failing(conn: asyncpg.Connection, *, since: timedelta, last_failure: timedelta) -> None:
    """The endpoint has been failing for ``since``; its last failure was ``last_failure`` ago."""
    await conn.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - $1::interval,"
        " last_failure_at = now() - $2::interval",
        since,
        last_failure,
    )


async def test_failing_for_too_long_disables_the_endpoint(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/fail"))
    await failing(conn, since=timedelta(days=2), last_failure=timedelta(minutes=10))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _disabled(vault, token, hook["id"]))
    reason = (await endpoint(vault, token, hook["id"]))["disabled_reason"]
    assert reason.startswith("Every delivery attempt failed since ")
    assert "unexpected status 500" in reason
    # the delivery's retry is called off with the endpoint, and its job then finds nothing to do
    assert await conn.fetchval("SELECT status FROM webhook_deliveries") == "cancelled"
    await wait_for(lambda: _no_jobs(conn))
    assert len(receiver.hits) == 1


async def test_a_failure_after_a_quiet_day_starts_a_new_streak(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver, conn: asyncpg.Connection
) -> None:
    """Its last delivery failed for good two days ago, nothing was sent since: one failure now
    is not two days of failing."""
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/fail"))
    await failing(conn, since=timedelta(days=3), last_failure=timedelta(days=2))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _logged(vault, token, hook["id"], 1))
    health = await endpoint(vault, token, hook["id"])
    assert health["active"]
    since = await conn.fetchval("SELECT now() - failing_since FROM webhook_endpoints")
    assert since.total_seconds() < 60


@pytest.mark.parametrize(("attempt", "disabled"), [(1, False), (2, True)])
async def test_a_retry_continues_the_streak_however_long_its_pause(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    attempt: int,
    disabled: bool,
) -> None:
    """A retry a day later (Retry-After: 86400) still belongs to the failing streak; a first
    attempt after a quiet day does not."""
    token = await make_token("webhooks:manage")
    hook = await register(client, token, "https://hooks.example.com/in")
    endpoint_id = await conn.fetchval("SELECT id FROM webhook_endpoints")
    delivery = await webhook_data.insert_ping(conn, endpoint_id=endpoint_id, data={})
    await failing(conn, since=timedelta(days=3), last_failure=timedelta(days=1))
    failed = delivery_data.Attempt(
        delivery_id=delivery["id"],
        attempt=attempt,
        status_code=503,
        duration_ms=5,
        error="unexpected status 503",
        excerpt="",
        delivery_status="pending",
        retry_in_s=86400,
        gone=False,
    )
    health = delivery_data.Health(disable_after_s=86400, streak_gap_s=3600)
    await delivery_data.record_attempt(conn, failed, health=health)
    assert (await endpoint(client, token, hook["id"]))["active"] is not disabled


async def test_a_hanging_receiver_is_cut_at_the_timeout(
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_token: TokenFactory,
    receiver: Receiver,
) -> None:
    vault = await aiohttp_client(create_app(lenient(settings, webhook_timeout_s=0.5)))
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/hang"))
    started = time.monotonic()
    await ping(vault, token, hook["id"])
    await wait_for(lambda: _logged(vault, token, hook["id"], 1))
    assert time.monotonic() - started < 5
    [logged] = await attempts(vault, token, hook["id"])
    assert logged["status_code"] is None and logged["error"] == "timed out after 0.5 s"
    assert 400 <= logged["duration_ms"] < 2000


async def test_a_deleted_endpoint_gets_nothing_more(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/fail"))
    await ping(vault, token, hook["id"])
    await wait_for(lambda: receiver.hits)
    assert (await vault.delete(f"{URL}/{hook['id']}", headers=bearer(token))).status == 200
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    await wait_for(lambda: _no_jobs(conn))  # the queued retry ran, found nothing, and stopped
    assert len(receiver.hits) == 1


# --- private targets refused where the connection is made ---


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_private_targets_are_refused_at_connect_time(
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_token: TokenFactory,
    receiver: Receiver,
    conn: asyncpg.Connection,
) -> None:
    vault = await aiohttp_client(create_app(lenient(settings, webhooks_allow_private=False)))
    token = await make_token("webhooks:manage")
    refused = await vault.post(
        URL, json={"url": receiver.url("/ok"), "events": [events.CREATED]}, headers=bearer(token)
    )
    assert refused.status == 422
    runners, receivers = [], [receiver]
    if ipv6_loopback():
        runner, receiver_v6 = await serve("::1")
        runners.append(runner)
        receivers.append(receiver_v6)
    try:
        for rx, address in zip(receivers, ("127.0.0.1", "::1"), strict=False):
            # stored while private targets were allowed (or a name that now resolves privately)
            endpoint_id = await conn.fetchval(
                "INSERT INTO webhook_endpoints (institution_id, url, events, secret)"
                " SELECT id, $1, $2, $3 FROM institutions RETURNING uuid::text",
                *(rx.url("/ok"), [events.CREATED], signing.new_secret()),
            )
            await ping(vault, token, endpoint_id)
            await wait_for(lambda: _logged(vault, token, endpoint_id, 1))  # noqa: B023
            [logged] = await attempts(vault, token, endpoint_id)
            assert logged["status_code"] is None and logged["delivery_status"] == "pending"
            assert logged["error"].startswith(f"destination {address} is not allowed")
        assert all(rx.hits == [] for rx in receivers)
    finally:
        for runner in runners:
            await runner.cleanup()


# --- the events of certificates and batches ---


def received(receiver: Receiver, event: str) -> list[dict[str, Any]]:
    payloads = [hit.json() for hit in receiver.answered]
    return [p["data"] for p in payloads if p["event"] == event]


async def test_certificate_and_batch_events_end_to_end(
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_token: TokenFactory,
    receiver: Receiver,
    conn: asyncpg.Connection,
) -> None:
    vault = await aiohttp_client(create_app(lenient(settings, cpu_processes=2)))
    token = await make_token("all")
    hook = await register(vault, token, receiver.url("/ok"))
    good, bad = await upload(vault, token), await upload(vault, token)
    key = await conn.fetchval("SELECT storage_key FROM uploads WHERE uuid = $1::uuid", bad)
    await vault.app[FILES].delete(key)  # processing this one fails for good
    body = {"entries": [entry(good, 0), entry(bad, 1)]}
    response = await vault.post(BULK_URL, json=body, headers=bearer(token))
    batch_id = (await response.json())["data"]["batch_id"]
    await wait_for(lambda: received(receiver, events.BATCH_COMPLETED), timeout_s=60)
    await wait_for(lambda: len(received(receiver, events.CREATED)) == 2)

    created = received(receiver, events.CREATED)
    assert {c["trigger_context"] for c in created} == {"bulk_upload"}
    assert {c["source"] for c in created} == {"vault"} and created[0]["batch_id"] == batch_id
    [approved] = received(receiver, events.APPROVED)
    reference = approved["reference_id"]
    assert approved["verification_url"] == f"http://vault.test/verify/{reference}"
    assert approved["download_path"] == (
        f"http://vault.test/business/certificate-vault/{approved['uuid']}/download"
    )
    [failed] = received(receiver, events.FAILED)
    assert "missing" in failed["error"] and failed["full_name"] == "Student 1"
    [completed] = received(receiver, events.BATCH_COMPLETED)
    assert completed["batch_id"] == batch_id and completed["status"] == "partially_completed"
    counts = ("total_certificates", "processed_certificates", "failed_certificates")
    assert [completed[c] for c in counts] == [2, 1, 1]

    await vault.app[FILES].put_bytes(key, make_pdf(), "application/pdf")
    retry = f"/business/certificate-vault/{failed['uuid']}/retry"
    assert (await vault.post(retry, headers=bearer(token))).status == 200
    await wait_for(lambda: len(received(receiver, events.BATCH_COMPLETED)) == 2, timeout_s=60)
    [retried] = received(receiver, events.RETRIED)
    assert retried["uuid"] == failed["uuid"]
    assert received(receiver, events.BATCH_COMPLETED)[1]["status"] == "completed"
    assert len(received(receiver, events.APPROVED)) == 2

    await revoke(settings, reference)
    await wait_for(lambda: received(receiver, events.REVOKED))
    [revoked] = received(receiver, events.REVOKED)
    assert (
        revoked["reference_id"] == reference and revoked["revocation_reason"] == "Issued in error"
    )
    for hit in receiver.hits:
        assert Webhook(hook["secret"]).verify(hit.body, hit.headers)
    # created 2, approved 2, failed, retried, batch.completed 2, revoked: each once, own id
    assert len({hit.id for hit in receiver.hits}) == len(receiver.hits) == 9


async def revoke(settings: Settings, reference: str) -> None:
    args = argparse.Namespace(certificate=reference, reason="Issued in error")
    with contextlib.redirect_stdout(io.StringIO()):
        assert await cli.cmd_certificates_revoke(args, settings) == 0


async def test_a_single_upload_is_created_with_its_context(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver
) -> None:
    token = await make_token("all")
    await register(vault, token, receiver.url("/ok"), subscribed=(events.CREATED,))
    form = single_form(7)
    response = await vault.post("/business/certificate-vault", data=form, headers=bearer(token))
    assert response.status == 201, await response.text()
    await wait_for(lambda: received(receiver, events.CREATED))
    [created] = received(receiver, events.CREATED)
    assert created["trigger_context"] == "single_upload" and created["batch_id"] is None
    assert created["uuid"] == (await response.json())["data"]["uuid"]


# --- a worker killed between enqueue and delivery ---


def start_delivery_worker(settings: Settings, dsn: str, *, workers: int) -> subprocess.Popen[bytes]:
    return start_worker(
        settings,
        dsn,
        WORKERS=str(workers),
        JOB_LEASE_S="3",
        JOB_TIMEOUT_S="2",
        POLL_INTERVAL_S="0.1",
        WEBHOOKS_ALLOW_HTTP="true",
        WEBHOOKS_ALLOW_PRIVATE="true",
        WEBHOOK_RETRY_SCHEDULE_S="1,1,1",
    )


@pytest.mark.slow
async def test_sigkill_between_enqueue_and_delivery_loses_no_delivery(
    settings: Settings,
    dsn: str,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_token: TokenFactory,
    receiver: Receiver,
    conn: asyncpg.Connection,
) -> None:
    vault = await aiohttp_client(create_app(lenient(settings, workers=0)))
    token = await make_token("webhooks:manage")
    hook = await register(vault, token, receiver.url("/slow"))
    queued = {await ping(vault, token, hook["id"]) for _ in range(8)}
    first = start_delivery_worker(settings, dsn, workers=2)
    try:
        await wait_for(lambda: receiver.hits, timeout_s=30)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert len({hit.id for hit in receiver.answered}) < len(queued), "killed too late"
    second = start_delivery_worker(settings, dsn, workers=4)
    try:
        await wait_for(lambda: {hit.id for hit in receiver.answered} == queued, timeout_s=30)
        await wait_for(lambda: _no_jobs(conn))
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    statuses = await conn.fetch("SELECT DISTINCT status FROM webhook_deliveries")
    assert [row["status"] for row in statuses] == ["delivered"]
    # the request cut by the kill was sent again: same delivery id, the very same body
    assert len(receiver.hits) > len(queued)
    for hit in receiver.hits:
        assert hit.id in queued
        assert hit.body == next(h.body for h in receiver.answered if h.id == hit.id)
