"""Finalizers that misbehave cannot wedge the ack flush."""

from __future__ import annotations

import contextlib

import asyncpg

from service.data import Connection
from service.queue import Finalizer, JobContext, Tallies
from tests.test_queue_tallies import four_jobs_in_one_flush


async def test_a_finalizer_that_swallows_a_database_error_is_retried_alone(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Its savepoint is rolled back, so the transaction of the flush goes on: the others are
    written on their first attempt, it is retried (and succeeds) on its second."""
    await conn.execute("CREATE TABLE effects (ref_id bigint, attempt int)")

    async def run(ctx: JobContext) -> Finalizer:
        async def finalize(conn: Connection) -> Tallies:
            await conn.execute("INSERT INTO effects VALUES ($1, $2)", ctx.ref_id, ctx.attempt)
            if ctx.ref_id == 1 and ctx.attempt == 1:
                # swallowed: the transaction is aborted all the same
                with contextlib.suppress(asyncpg.DivisionByZeroError):
                    await conn.execute("SELECT 1 / 0")
            return None

        return finalize

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 2), (2, 1), (3, 1)]
