"""Claims commit asynchronously (synchronous_commit off): a PostgreSQL crash can lose a claim
whose worker is still running the job. The same job claimed again after the restart must get
a token the lost claim never had, or the old worker's acks would pass the fence."""

from __future__ import annotations

import asyncpg
import pytest

from service import db
from service.queue import producer, store
from service.queue.leases import SESSION as LEASE_SESSION
from tests.drill_helpers import PrivatePostgres

pytestmark = pytest.mark.slow


async def claim(dsn: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn, server_settings=LEASE_SESSION)
    try:
        rows = await store.claim_jobs(
            conn, kinds=["k"], limit=8, lease_s=60, worker_id="w", reclaim=True, timeout_s=10
        )
    finally:
        await conn.close()
    return {row["id"]: row["lease_token"] for row in rows}


async def test_a_claim_lost_in_a_crash_is_not_reissued_with_its_tokens(
    private_pg: PrivatePostgres,
) -> None:
    await db.ensure_database(private_pg.dsn(), "vault")
    dsn = private_pg.dsn("vault")
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn)
        # the WAL writer waits 10 s: an asynchronous commit stays in memory until the crash
        await conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        await conn.execute("SELECT pg_reload_conf()")
        await producer.enqueue_many(conn, "k", ref_ids=range(8))
    finally:
        await conn.close()
    before = await claim(dsn)
    private_pg.stop()  # immediate: nothing more reaches the disk
    private_pg.start()
    after = await claim(dsn)
    assert sorted(after) == sorted(before) and len(before) == 8  # the claim was lost
    assert not set(after.values()) & set(before.values())
