"""Finalizers that misbehave cannot wedge the ack flush."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import asyncpg

from service.data import Connection
from service.queue import Finalizer, JobContext, Tallies
from service.queue.types import Grouped, GroupWriter
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


async def test_grouped_finalizers_of_a_flush_are_written_in_one_call(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Four ``Grouped`` finalizers with equal writers: one call with the four items, in the
    flush's order, each item's tallies counted."""
    calls: list[list[int]] = []
    write = await recording_writer(conn, calls)

    async def run(ctx: JobContext) -> Finalizer:
        assert ctx.ref_id is not None
        return Grouped(write, (ctx.ref_id, ctx.attempt))

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert calls == [[0, 1, 2, 3]]


async def test_a_failing_group_is_written_again_one_job_at_a_time(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """The group's call fails (one item is bad): it is rolled back, and each job's finalizer
    runs as a group of one, so the three good ones land on their first attempt and the bad
    one is retried alone."""
    calls: list[list[int]] = []
    write = await recording_writer(conn, calls, bad=(1, 1))

    async def run(ctx: JobContext) -> Finalizer:
        assert ctx.ref_id is not None
        return Grouped(write, (ctx.ref_id, ctx.attempt))

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 2), (2, 1), (3, 1)]
    assert calls[:5] == [[0, 1, 2, 3], [0], [1], [2], [3]]
    assert calls[5:] == [[1]]


async def test_finalizers_of_different_writers_group_apart(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Even and odd jobs name different writers: two calls of two items."""
    even_calls: list[list[int]] = []
    odd_calls: list[list[int]] = []
    even = await recording_writer(conn, even_calls)
    odd = await recording_writer(conn, odd_calls, table_exists=True)

    async def run(ctx: JobContext) -> Finalizer:
        assert ctx.ref_id is not None
        return Grouped(odd if ctx.ref_id % 2 else even, (ctx.ref_id, ctx.attempt))

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert (even_calls, odd_calls) == ([[0, 2]], [[1, 3]])


async def test_jobs_without_a_finalizer_do_not_break_up_the_group(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Two jobs have nothing to finalize (an email already sent, say): the other two are still
    written in one call."""
    calls: list[list[int]] = []
    write = await recording_writer(conn, calls)

    async def run(ctx: JobContext) -> Finalizer | None:
        assert ctx.ref_id is not None
        return Grouped(write, (ctx.ref_id, ctx.attempt)) if ctx.ref_id % 2 else None

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(1, 1), (3, 1)]
    assert calls == [[1, 3]]


async def recording_writer(
    conn: asyncpg.Connection,
    calls: list[list[int]],
    *,
    bad: tuple[int, int] | None = None,
    table_exists: bool = False,
) -> GroupWriter[tuple[int, int]]:
    """A group writer that records each call's ref ids and leaves (ref_id, attempt) rows in
    ``effects``; a group holding ``bad`` fails after writing."""
    if not table_exists:
        await conn.execute("CREATE TABLE effects (ref_id bigint, attempt int)")

    async def write(conn: Connection, items: Sequence[tuple[int, int]]) -> list[Tallies]:
        calls.append([ref_id for ref_id, _ in items])
        await conn.executemany("INSERT INTO effects VALUES ($1, $2)", items)
        if bad in items:
            raise RuntimeError("a bad item")
        return [None] * len(items)

    return write
