"""Fault drills with real processes (issue 7 point 5): a worker killed at each stage of a
certificate, PostgreSQL stopped and started mid-batch, a worker paused past its lease, storage
that cannot be written. Each ends with the global exactly-once checker."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import db
from service.config import Settings
from service.jobs import PROCESS_CERTIFICATES
from tests.conftest import TokenFactory, bearer
from tests.drill_helpers import (
    PrivatePostgres,
    Processes,
    assert_exactly_once,
    batch_done,
    free_port,
    generated,
    job_metric,
    new_institution_token,
    open_transaction,
    ready,
    service_env,
    settled,
    signal_group,
    stop_gracefully,
    stored_pdfs,
    submit_batch,
    wait_for_lock_waiters,
)
from tests.drill_mail import assert_one_email_each, smtp_mailbox
from tests.drill_stages import STAGES, Drill
from tests.queue_helpers import wait_until
from tests.samples import make_pdf
from tests.vault_helpers import UPLOAD_URL

pytestmark = pytest.mark.slow

CERTIFICATES = 3


# --- 1. SIGKILL at each stage, then a new worker -------------------------------------------


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_worker_killed_at_each_stage_then_replaced(
    stage: str,
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
    processes: Processes,
) -> None:
    """A worker (one job at a time) is killed at the stage, a new one finishes the batch: each
    certificate generated once, one set of artifacts, one outbox row, one email; two (with one
    Message-ID) only for the email the SMTP server accepted just before the kill."""
    token = await make_token("all")
    await submit_batch(client, token, CERTIFICATES)
    async with smtp_mailbox() as (mailbox, smtp_url):
        env = service_env(dsn, settings.data_dir, smtp_url=smtp_url)
        drill = Drill(conn, dsn, settings.data_dir, env, processes, mailbox)
        duplicated = await STAGES[stage](drill)
        rescuer = drill.start_worker(workers=2)
        await wait_until(lambda: settled(conn, CERTIFICATES), timeout_s=60, every_s=0.1)
        assert await stop_gracefully(rescuer) == 0
    await assert_exactly_once(conn, settings.data_dir, CERTIFICATES)
    await assert_one_email_each(conn, mailbox, duplicated)


# --- 2. PostgreSQL stopped and started during a batch ---------------------------------------

OUTAGE_CERTIFICATES = 16
OUTAGE_S = 5.0  # longer than a lease: the jobs held at the stop are taken over


@pytest.fixture
async def outage_dsn(private_pg: PrivatePostgres) -> AsyncIterator[str]:
    await db.ensure_database(private_pg.dsn(), "vault")
    yield private_pg.dsn("vault")


async def test_postgres_stopped_and_started_mid_batch(
    private_pg: PrivatePostgres, outage_dsn: str, tmp_path: Path, processes: Processes
) -> None:
    """A crash-like stop of PostgreSQL under a `serve` process running workers: meanwhile the
    API answers 503 at once; after the start it is ready again and the workers resume alone
    (no restart); the batch completes, each certificate generated once."""
    token = await new_institution_token(outage_dsn)
    port = free_port()
    # two certificates to a job: jobs finish one after another, and the outage falls between
    env = service_env(
        outage_dsn, tmp_path / "data", host="127.0.0.1", port=port, certificates_per_job=2
    )
    service = processes.start("serve", env)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", timeout=timeout) as http:
        await wait_until(lambda: ready(http), timeout_s=60, every_s=0.2)
        batch_id = await submit_batch(http, token, OUTAGE_CERTIFICATES)
        conn = await asyncpg.connect(outage_dsn)
        try:
            await wait_until(lambda: _at_least(conn, 2), timeout_s=60, every_s=0.05)
            assert await generated(conn) < OUTAGE_CERTIFICATES, "stopped too late to test"
        finally:
            await conn.close()
        await asyncio.to_thread(private_pg.stop)
        stopped = time.monotonic()
        await _answers_503_meanwhile(http, token, batch_id)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        await asyncio.to_thread(private_pg.start)
        t0 = time.monotonic()
        await wait_until(lambda: ready(http), timeout_s=30, every_s=0.2)
        print("DRILL2 ready after", time.monotonic() - t0)
        await wait_until(lambda: batch_done(http, token, batch_id), timeout_s=90, every_s=0.2)
        print("DRILL2 done after", time.monotonic() - t0)
    conn = await asyncpg.connect(outage_dsn)
    try:
        await wait_until(lambda: settled(conn, OUTAGE_CERTIFICATES), timeout_s=30, every_s=0.1)
        assert await stop_gracefully(service) == 0
        await assert_exactly_once(conn, tmp_path / "data", OUTAGE_CERTIFICATES)
    finally:
        await conn.close()


async def _answers_503_meanwhile(http: aiohttp.ClientSession, token: str, batch_id: str) -> None:
    """Database-backed routes, business and public, reading and writing: 503 in the contract's
    shape, at once; liveness still 200."""
    requests = [
        ("GET", f"/business/certificate-vault/batches/{batch_id}"),
        ("GET", "/business/certificate-vault/batches"),
        ("POST", UPLOAD_URL),
        ("GET", "/api/verify/ABCDEF123456"),
        ("GET", "/health/ready"),
    ]
    for method, path in requests:
        form = aiohttp.FormData()
        form.add_field("file", make_pdf(), filename="c.pdf")
        started = time.monotonic()
        body = form if method == "POST" else None
        async with http.request(method, path, data=body, headers=bearer(token)) as response:
            answer = await response.json()
            assert response.status == 503, (path, response.status, answer)
        assert answer["error_code"] == "SERVICE_UNAVAILABLE", answer
        assert time.monotonic() - started < 3, f"{method} {path} took too long"
    async with http.get("/health/live") as response:
        assert response.status == 200


async def _at_least(conn: asyncpg.Connection, minimum: int) -> bool:
    return await generated(conn) >= minimum


# --- 3. a worker paused past its lease ------------------------------------------------------


async def test_a_worker_paused_past_its_lease_has_its_late_result_refused(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
    processes: Processes,
) -> None:
    """A worker frozen (SIGSTOP) with its job (both certificates, one chunk) past the render
    and the store, until after another worker took it over and finished. Resumed, its job is
    past its deadline and its lease: the outcome it writes is refused by the fencing token
    (counted as a stale ack), nothing is completed twice, the artifacts stay the ones
    recorded."""
    token = await make_token("all")
    await submit_batch(client, token, 2)
    async with smtp_mailbox() as (mailbox, smtp_url):
        env = service_env(dsn, settings.data_dir, smtp_url=smtp_url)
        port = free_port()
        # the paused one is a `serve` process: its /metrics counts the stale acknowledgements
        paused_env = env | {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": "2",
            "JOB_LEASE_S": "6",
            "JOB_TIMEOUT_S": "5",  # time enough to reach the lock below; still under the lease
        }
        # The job stored both PDFs; its last read (the recipients) waits on our lock.
        async with open_transaction(dsn) as blocker:
            await blocker.execute("LOCK TABLE recipients IN ACCESS EXCLUSIVE MODE")
            paused = processes.start("serve", paused_env)
            await wait_for_lock_waiters(conn, "SELECT r.id FROM unnest")
            await wait_until(lambda: _pdfs_stored(settings.data_dir, 2), timeout_s=30)
            signal_group(paused, signal.SIGSTOP)
        assert await generated(conn) == 0
        rescuer = processes.start("worker", env)
        await wait_until(lambda: settled(conn, 2), timeout_s=60, every_s=0.1)
        signal_group(paused, signal.SIGCONT)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await wait_until(lambda: _stale_acks(http, 1), timeout_s=30, every_s=0.2)
            assert await _job_metric(http, "stale_acks") == 1
            assert await _job_metric(http, "completed") == 0
        assert await stop_gracefully(rescuer) == 0
        assert await stop_gracefully(paused) == 0
    await assert_exactly_once(conn, settings.data_dir, 2)
    await assert_one_email_each(conn, mailbox)


async def _pdfs_stored(data_dir: Path, expected: int) -> bool:
    return len(stored_pdfs(data_dir / "files" / "certificates")) >= expected


async def _job_metric(http: aiohttp.ClientSession, counter: str) -> float:
    return await job_metric(http, f"vault_jobs_{counter}_total", PROCESS_CERTIFICATES)


async def _stale_acks(http: aiohttp.ClientSession, expected: int) -> bool:
    return await _job_metric(http, "stale_acks") >= expected


# --- 4. storage that cannot be written -------------------------------------------------------


async def test_unwritable_storage_fails_entries_clearly_and_a_retry_succeeds(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
    processes: Processes,
) -> None:
    """Artifacts cannot be written: after its attempts each entry is failed with a storage error
    that says why (also in the batch's /errors); storage repaired, a retry of each succeeds."""
    token = await make_token("all")
    certificates_dir = settings.data_dir / "files" / "certificates"
    batch_id = await submit_batch(client, token, CERTIFICATES)
    # a file where the directory should be: mkdir fails, even for root
    certificates_dir.write_text("in the way")
    env = service_env(dsn, settings.data_dir, job_max_attempts=2)
    worker = processes.start("worker", env)
    batch_url = f"/business/certificate-vault/batches/{batch_id}"
    await wait_until(lambda: _batch_status(conn, "failed"), timeout_s=60, every_s=0.1)
    response = await client.get(f"{batch_url}/errors", headers=bearer(token))
    failures = (await response.json())["data"]
    assert len(failures) == CERTIFICATES
    for failure in failures:
        assert failure["error"].startswith("Storage unavailable"), failure["error"]
        assert "Not a directory" in failure["error"], failure["error"]
    certificates_dir.unlink()
    for failure in failures:
        url = f"/business/certificate-vault/{failure['uuid']}/retry"
        assert (await client.post(url, headers=bearer(token))).status == 200
    await wait_until(lambda: _batch_status(conn, "completed"), timeout_s=60, every_s=0.1)
    await wait_until(lambda: settled(conn, CERTIFICATES), timeout_s=30, every_s=0.1)
    assert await stop_gracefully(worker) == 0
    await assert_exactly_once(conn, settings.data_dir, CERTIFICATES)


async def _batch_status(conn: asyncpg.Connection, status: str) -> bool:
    current: str = await conn.fetchval("SELECT status FROM batches")
    return current == status
