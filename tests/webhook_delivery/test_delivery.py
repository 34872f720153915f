"""Webhook deliveries end to end: the app's workers POST to real receivers on loopback.

Every target is 127.0.0.1 or ::1. Retries use a 1-second schedule so a retry takes a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook

from service.app import create_app
from service.config import Settings
from service.data import webhook_deliveries as delivery_data
from service.data import webhooks as webhook_data
from service.webhooks import signing
from tests.conftest import TokenFactory, bearer
from tests.webhook_delivery.helpers import (
    URL,
    Receiver,
    _logged,
    _no_jobs,
    attempts,
    endpoint,
    lenient,
    ping,
    register,
    wait_for,
)


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
