"""Stopping: a first SIGTERM or SIGINT lets running jobs finish (up to DRAIN_TIMEOUT_S); a
second one gives them back to the queue at once, in `worker` and in `serve`, without a
traceback and without using up an attempt."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.config import Settings
from service.queue import enqueue_many
from tests.conftest import TokenFactory
from tests.drill_helpers import (
    Processes,
    free_port,
    open_transaction,
    service_env,
    submit_batch,
    wait_for_lock_waiters,
)
from tests.drill_stages import START
from tests.queue_helpers import DONE_TABLE, count, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.kill_all()


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


async def test_a_second_signal_stops_serve_at_once(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    dsn: str,
    processes: Processes,
    tmp_path: Path,
) -> None:
    """The job waits on our row lock, so only a second signal can end the drain early."""
    await submit_batch(client, await make_token("all"), 1)
    env = service_env(
        dsn, settings.data_dir, host="127.0.0.1", port=free_port(), drain_timeout_s=60
    )
    async with open_transaction(dsn) as blocker:
        await blocker.execute("SELECT id FROM certificates FOR UPDATE")
        serve = processes.start("serve", env | {"JOB_LEASE_S": "90", "JOB_TIMEOUT_S": "80"})
        await wait_for_lock_waiters(conn, START)
        serve.send_signal(signal.SIGINT)
        await asyncio.sleep(1)
        assert serve.poll() is None  # draining
        serve.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(serve.wait, 20) == 0
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert "Traceback" not in log and "stopping at once" in log
    assert await count(conn, "SELECT count(*) FROM jobs WHERE state = 0 AND attempts = 0") == 1


async def _running(conn: asyncpg.Connection, expected: int) -> bool:
    return await count(conn, "SELECT count(*) FROM jobs WHERE state = 1") == expected
