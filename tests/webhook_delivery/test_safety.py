"""Webhook delivery safeguards: private targets refused at connect, no delivery lost to SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from service.webhooks import events, signing
from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import start_worker
from tests.webhook_delivery.helpers import (
    URL,
    Receiver,
    _logged,
    _no_jobs,
    attempts,
    lenient,
    ping,
    register,
    serve,
    wait_for,
)

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
