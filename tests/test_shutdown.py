"""Stopping: a first SIGTERM or SIGINT lets running jobs finish (up to DRAIN_TIMEOUT_S); a
second one gives them back to the queue at once, in `worker` and in `serve`, without a
traceback and without using up an attempt."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import db
from service.config import Settings
from service.queue import enqueue_many
from tests.conftest import TokenFactory
from tests.drill_helpers import (
    Processes,
    free_port,
    open_transaction,
    ready,
    service_env,
    submit_batch,
    wait_for_lock_waiters,
)
from tests.drill_stages import START
from tests.queue_helpers import DONE_TABLE, count, wait_until
from tests.vault_helpers import UPLOAD_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


async def test_a_second_signal_stops_a_worker_at_once(conn: asyncpg.Connection, dsn: str) -> None:
    await conn.execute(DONE_TABLE)
    await enqueue_many(conn, "record", ref_ids=range(4))
    # leases of 30 s, jobs of 20 s, a drain of up to 60 s
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.queue_worker_proc", dsn, "30", "20", "60"),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_until(lambda: _running(conn, 4), timeout_s=30)
    worker.send_signal(signal.SIGTERM)
    await asyncio.sleep(1)
    assert worker.returncode is None  # draining: its jobs may still finish
    worker.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(worker.wait(), 15) == 0
    assert worker.stderr is not None
    assert b"Traceback" not in await worker.stderr.read()
    assert await count(conn, "SELECT count(*) FROM jobs WHERE state = 0 AND attempts = 0") == 4
    assert await count(conn, "SELECT count(*) FROM queue_test_done") == 0


async def test_a_signal_during_start_up_stops_the_worker(
    conn: asyncpg.Connection, settings: Settings, dsn: str, processes: Processes, tmp_path: Path
) -> None:
    """Its start-up waits for another process's migration lock: a signal ends it there."""
    env = service_env(dsn, settings.data_dir, migrate_on_start="true")
    async with open_transaction(dsn) as holder:
        await holder.execute("SELECT pg_advisory_xact_lock($1)", db.MIGRATION_LOCK_KEY)
        worker = processes.start("worker", env)
        await wait_for_lock_waiters(conn, "SELECT pg_advisory_lock")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0
    assert "Traceback" not in next(tmp_path.glob("worker-*.log")).read_text()
    assert await count(conn, "SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize("workers", [2, 0])
async def test_a_second_signal_stops_serve_at_once(
    workers: int,
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
    processes: Processes,
    tmp_path: Path,
) -> None:
    """A job waits on our row lock and an upload stalls halfway: a first signal waits for
    both (DRAIN_TIMEOUT_S: 60 s); a second ends the wait at once."""
    token = await make_token("all")
    await submit_batch(client, token, 1)
    port = free_port()
    env = service_env(
        dsn, settings.data_dir, host="127.0.0.1", port=port, drain_timeout_s=60, workers=workers
    )
    async with open_transaction(dsn) as blocker:
        await blocker.execute("SELECT id FROM certificates FOR UPDATE")
        serve = processes.start("serve", env | {"JOB_LEASE_S": "90", "JOB_TIMEOUT_S": "80"})
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await wait_until(lambda: ready(http), timeout_s=60)
        if workers:
            await wait_for_lock_waiters(conn, START)
        async with stalled_upload(port, token):
            serve.send_signal(signal.SIGINT)
            await asyncio.sleep(1)
            assert serve.poll() is None  # waiting for the upload and the job
            serve.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(serve.wait, 20) == 0
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert "Traceback" not in log and "stopping at once" in log
    given_back = "SELECT count(*) FROM jobs WHERE state = 0 AND attempts = 0"
    assert await count(conn, given_back) == 1


@contextlib.asynccontextmanager
async def stalled_upload(port: int, token: str) -> AsyncIterator[None]:
    """An upload whose body stops after its first bytes, its connection held open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    part = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    )
    head = (
        f"POST {UPLOAD_URL} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
    )
    writer.write(head.encode() + part)
    await writer.drain()
    await asyncio.sleep(0.5)  # the handler is reading the body
    try:
        yield
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        del reader


async def _running(conn: asyncpg.Connection, expected: int) -> bool:
    return await count(conn, "SELECT count(*) FROM jobs WHERE state = 1") == expected
