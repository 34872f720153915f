"""Crash drills with real processes: a worker killed mid-batch loses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.config import Settings
from tests.conftest import TokenFactory, bearer
from tests.drill_helpers import stored_pdfs
from tests.vault_helpers import BULK_URL, entry, start_worker, upload

pytestmark = pytest.mark.slow
CERTIFICATES = 24


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Two certificates to a job: jobs end one after another, so the kill falls mid-batch."""
    return settings.with_overrides(certificates_per_job=2)


async def generated(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM certificates WHERE status = 'generated'")
    return value


async def wait_until(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def submit_batch(client: TestClient, token: str) -> str:
    files = [await upload(client, token) for _ in range(CERTIFICATES)]
    body = {"entries": [entry(f, n) for n, f in enumerate(files)]}
    response = await client.post(BULK_URL, json=body, headers=bearer(token))
    assert response.status == 202
    batch_id: str = (await response.json())["data"]["batch_id"]
    return batch_id


async def test_sigkill_mid_batch_loses_nothing_and_repeats_nothing(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
) -> None:
    token = await make_token("all")
    await submit_batch(client, token)
    first = start_worker(settings, dsn, WORKERS="2")
    try:
        await wait_until(lambda: _at_least(conn, 3), timeout_s=60)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert await generated(conn) < CERTIFICATES, "the kill came too late to test anything"
    second = start_worker(settings, dsn)
    try:
        await wait_until(lambda: _batch_done(conn), timeout_s=90)
        await wait_until(lambda: _emails_sent(conn, CERTIFICATES), timeout_s=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert await generated(conn) == CERTIFICATES
    batch = await conn.fetchrow(
        "SELECT status, processed_certificates, failed_certificates FROM batches"
    )
    assert tuple(batch) == ("completed", CERTIFICATES, 0)
    assert (
        await conn.fetchval("SELECT count(DISTINCT reference_id) FROM certificates") == CERTIFICATES
    )
    assert await conn.fetchval("SELECT count(*) FROM email_outbox") == CERTIFICATES
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == CERTIFICATES
    # a write cut by SIGKILL may leave its ".tmp-*.part" sibling; never a second PDF
    assert len(stored_pdfs(settings.data_dir / "files" / "certificates")) == CERTIFICATES
    assert await conn.fetchval("SELECT count(*) FROM certificate_codes") == CERTIFICATES
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def _at_least(conn: asyncpg.Connection, count: int) -> bool:
    return await generated(conn) >= count


async def _batch_done(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT status FROM batches") != "processing"


async def _emails_sent(conn: asyncpg.Connection, count: int) -> bool:
    sent: int = await conn.fetchval("SELECT count(*) FROM email_outbox WHERE status = 'sent'")
    return sent >= count
