"""Tallies: counts that finalizers add to shared rows, summed and written once per flush."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from service.data import Connection
from service.queue import (
    Finalizer,
    JobContext,
    JobType,
    PermanentFailure,
    Tallies,
    Tally,
    enqueue_many,
)
from tests.queue_helpers import queue_empty, running_engine, wait_until

TALLY_LOG = (
    "CREATE TABLE tally_log (n serial, ref_id bigint, counts int[], tx bigint NOT NULL"
    " DEFAULT txid_current())"
)


async def log_tally(conn: Connection, ref_id: int, counts: tuple[int, ...]) -> None:
    await conn.execute("INSERT INTO tally_log (ref_id, counts) VALUES ($1, $2)", ref_id, counts)


def shared_row(ctx: JobContext) -> int:
    assert ctx.ref_id is not None
    return 2 - ctx.ref_id % 2  # even jobs add to row 2, odd ones to row 1


async def run(ctx: JobContext) -> Finalizer:
    if ctx.ref_id == 5:
        raise PermanentFailure("no luck")

    async def finalize(conn: Connection) -> Tallies:
        assert ctx.ref_id is not None
        return [Tally("row", shared_row(ctx), (1, ctx.ref_id), log_tally)]

    return finalize


async def exhausted(conn: Connection, ctx: JobContext, error: str) -> Tallies:
    return [Tally("row", shared_row(ctx), (0, 100), log_tally)]


async def test_tallies_are_summed_and_written_once_per_row_in_order(
    conn: asyncpg.Connection, dsn: str
) -> None:
    await conn.execute(TALLY_LOG)
    job_type = JobType("t", run, on_exhausted=exhausted)
    # one flush for all six outcomes: a batch of six, and time enough to fill it
    async with running_engine(dsn, [job_type], ack_interval_s=2.0, ack_batch=6):
        await enqueue_many(conn, "t", ref_ids=range(6))
        await wait_until(lambda: queue_empty(conn))
    rows = await conn.fetch("SELECT ref_id, counts, tx FROM tally_log ORDER BY n")
    # row 1: jobs 1 and 3 generated, job 5 exhausted; row 2: jobs 0, 2 and 4
    assert [(r["ref_id"], r["counts"]) for r in rows] == [(1, [2, 104]), (2, [3, 6])]
    assert len({r["tx"] for r in rows}) == 1


async def test_a_failed_finalizer_adds_nothing(conn: asyncpg.Connection, dsn: str) -> None:
    await conn.execute(TALLY_LOG)

    async def failing_run(ctx: JobContext) -> Finalizer:
        async def finalize(conn: Connection) -> Tallies:
            if ctx.attempt == 1:
                await conn.execute("SELECT 1 / 0")
            return [Tally("row", 1, (1,), log_tally)]

        return finalize

    job_type = JobType("t", failing_run, backoff=lambda attempt: 0.0)
    async with running_engine(dsn, [job_type]):
        await enqueue_many(conn, "t", ref_ids=range(3))
        await wait_until(lambda: queue_empty(conn))
    total = await conn.fetchval("SELECT sum(counts[1]) FROM tally_log")
    assert total == 3  # each job counted once: by its second, successful finalizer


async def test_a_failing_tally_retries_only_the_jobs_behind_it(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Row 1's first write fails: its jobs are requeued (their effects rolled back), the jobs
    of row 2 complete in the same flush; on their next attempt row 1's jobs complete."""
    await conn.execute(TALLY_LOG)
    await conn.execute("CREATE TABLE effects (ref_id bigint, attempt int)")
    failures = [1]

    async def flaky_log(conn: Connection, ref_id: int, counts: tuple[int, ...]) -> None:
        if ref_id == 1 and failures:
            failures.pop()
            raise RuntimeError("row 1 is busy")
        await log_tally(conn, ref_id, counts)

    async def run(ctx: JobContext) -> Finalizer:
        async def finalize(conn: Connection) -> Tallies:
            await conn.execute("INSERT INTO effects VALUES ($1, $2)", ctx.ref_id, ctx.attempt)
            return [Tally("row", shared_row(ctx), (1,), flaky_log)]

        return finalize

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 2), (2, 1), (3, 2)]
    total = await conn.fetchval("SELECT sum(counts[1]) FROM tally_log")
    assert total == 4


async def test_an_exhausted_job_behind_a_failed_tally_keeps_its_own_error(
    conn: asyncpg.Connection, dsn: str
) -> None:
    seen: list[str] = []
    failures = [1]

    async def flaky_log(conn: Connection, ref_id: int, counts: tuple[int, ...]) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("row 1 is busy")

    async def run(ctx: JobContext) -> Finalizer:
        raise PermanentFailure("The original file is missing from storage.")

    async def exhausted(conn: Connection, ctx: JobContext, error: str) -> Tallies:
        seen.append(error)
        return [Tally("row", 1, (1,), flaky_log)]

    job_type = JobType("t", run, on_exhausted=exhausted, backoff=lambda attempt: 0.0)
    async with running_engine(dsn, [job_type]):
        await enqueue_many(conn, "t", ref_ids=[1])
        await wait_until(lambda: queue_empty(conn))
    assert seen == ["The original file is missing from storage."] * 2


async def test_one_failing_finalizer_among_successes_rolls_back_only_itself(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """A flush of successes runs its finalizers together in one savepoint; one fails: that
    savepoint is rolled back and each runs in one of its own. The others' effects and counts
    are written once, the failing one's not at all, and it succeeds on its retry."""
    await conn.execute(TALLY_LOG)
    await conn.execute("CREATE TABLE effects (ref_id bigint, attempt int)")

    async def run(ctx: JobContext) -> Finalizer:
        async def finalize(conn: Connection) -> Tallies:
            await conn.execute("INSERT INTO effects VALUES ($1, $2)", ctx.ref_id, ctx.attempt)
            if ctx.ref_id == 2 and ctx.attempt == 1:
                await conn.execute("SELECT 1 / 0")
            return [Tally("row", 1, (1,), log_tally)]

        return finalize

    assert await four_jobs_in_one_flush(conn, dsn, run) == [(0, 1), (1, 1), (2, 2), (3, 1)]
    counts = await conn.fetch("SELECT counts FROM tally_log ORDER BY n")
    assert [r["counts"] for r in counts] == [[3], [1]]


async def four_jobs_in_one_flush(
    conn: asyncpg.Connection, dsn: str, run: Callable[[JobContext], Awaitable[Finalizer | None]]
) -> list[tuple[int, int]]:
    """Run four jobs whose outcomes are written in one flush (retries in later ones); the
    (ref_id, attempt) rows their finalizers left in ``effects``."""
    job_type = JobType("t", run, backoff=lambda attempt: 0.0)
    async with running_engine(dsn, [job_type], ack_interval_s=2.0, ack_batch=4):
        await enqueue_many(conn, "t", ref_ids=range(4))
        await wait_until(lambda: queue_empty(conn))
    effects = await conn.fetch("SELECT ref_id, attempt FROM effects ORDER BY ref_id")
    return [(r["ref_id"], r["attempt"]) for r in effects]
