"""Pooled connections go back without asyncpg's reset query (``db.keep_session``), yet never
with a transaction still open."""

from __future__ import annotations

from service import db


async def test_a_connection_released_inside_a_transaction_comes_back_rolled_back(
    dsn: str,
) -> None:
    pool = await db.create_pool(dsn, min_size=1, max_size=1, timeout_s=5)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_behind (x int)")
        await pool.release(conn)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT to_regclass('pg_temp.left_behind')") is None
    finally:
        await pool.close()
