"""The job engine's failures: retries with backoff, exhaustion, timeouts, failing finalizers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from service.data import Connection
from service.queue import (
    Finalizer,
    JobContext,
    JobType,
    PermanentFailure,
    RetryLater,
    enqueue,
    enqueue_many,
)
from tests.queue_helpers import (
    assert_done_exactly_once,
    count,
    queue_empty,
    record_completion,
    running_engine,
    sample,
    wait_until,
)


class Failures:
    """A job type that fails as told and records its runs and its exhaustion."""

    def __init__(self, fail: Callable[[JobContext], None], **options: Any) -> None:
        self.fail = fail
        self.runs: list[int] = []
        self.exhausted: list[tuple[int, str]] = []
        self.job_type = JobType("t", self.run, self.on_exhausted, **options)

    async def run(self, ctx: JobContext) -> Finalizer:
        self.runs.append(ctx.attempt)
        self.fail(ctx)
        return record_completion(ctx, "ok")

    async def on_exhausted(self, conn: Connection, ctx: JobContext, error: str) -> None:
        await conn.execute("SELECT 1")
        self.exhausted.append((ctx.attempt, error))


def _raise(exc: Exception) -> Callable[[JobContext], None]:
    def fail(ctx: JobContext) -> None:
        raise exc

    return fail


async def test_failing_job_is_retried_with_backoff_then_exhausted(
    conn: asyncpg.Connection, dsn: str
) -> None:
    def fail(ctx: JobContext) -> None:
        raise RuntimeError(f"boom {ctx.attempt}")

    delays: list[int] = []
    failures = Failures(fail, backoff=lambda attempt: delays.append(attempt) or 0.05 * attempt)
    registry = CollectorRegistry()
    async with running_engine(dsn, [failures.job_type], registry=registry, max_attempts=3):
        await enqueue(conn, "t", ref_id=1)
        await wait_until(lambda: queue_empty(conn))
    assert failures.runs == [1, 2, 3]
    assert delays == [1, 2]
    assert failures.exhausted == [(3, "RuntimeError: boom 3")]
    for name, value in [("failed", 3), ("retried", 2), ("exhausted", 1), ("completed", 0)]:
        assert sample(registry, f"vault_jobs_{name}_total", "t") == value, name


async def test_last_error_and_run_at_are_kept_between_attempts(
    conn: asyncpg.Connection, dsn: str
) -> None:
    failures = Failures(_raise(ValueError("bad input")), backoff=lambda attempt: 30.0)
    async with running_engine(dsn, [failures.job_type]):
        await enqueue(conn, "t")
        await wait_until(lambda: _attempts(conn, 1))
    row = await conn.fetchrow(
        "SELECT state, attempts, last_error, lease_token, run_at - now() AS wait FROM jobs"
    )
    assert row is not None
    assert (row["state"], row["attempts"], row["last_error"]) == (0, 1, "ValueError: bad input")
    assert row["lease_token"] is None and 25 < row["wait"].total_seconds() <= 30


async def _attempts(conn: asyncpg.Connection, expected: int) -> bool:
    return (
        await count(conn, "SELECT count(*) FROM jobs WHERE state = 0 AND attempts = $1", expected)
        == 1
    )


async def test_permanent_failure_skips_the_retries(conn: asyncpg.Connection, dsn: str) -> None:
    failures = Failures(_raise(PermanentFailure("file is not a PDF")), max_attempts=5)
    async with running_engine(dsn, [failures.job_type]):
        await enqueue(conn, "t")
        await wait_until(lambda: queue_empty(conn))
    assert failures.runs == [1]
    assert failures.exhausted == [(1, "file is not a PDF")]


async def test_a_timeout_is_a_failure(conn: asyncpg.Connection, dsn: str) -> None:
    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    exhausted: list[str] = []

    async def on_exhausted(conn: Connection, ctx: JobContext, error: str) -> None:
        exhausted.append(error)

    job_type = JobType("t", slow, on_exhausted, max_attempts=1, timeout_s=0.2)
    async with running_engine(dsn, [job_type]):
        await enqueue(conn, "t")
        await wait_until(lambda: queue_empty(conn))
    assert exhausted == ["timed out after 0.2 s"]


async def test_retry_later_honours_its_delay(
    conn: asyncpg.Connection, dsn: str, done_table: None
) -> None:
    times: list[float] = []

    def fail(ctx: JobContext) -> None:
        times.append(time.monotonic())
        if ctx.attempt == 1:
            raise RetryLater(0.6, "receiver busy")

    failures = Failures(fail)
    async with running_engine(dsn, [failures.job_type], poll_interval_s=0.05):
        await enqueue(conn, "t", ref_id=1)
        await wait_until(lambda: queue_empty(conn))
    assert failures.runs == [1, 2] and failures.exhausted == []
    assert times[1] - times[0] >= 0.6


async def test_a_failing_finalizer_turns_into_a_retry_without_harming_the_others(
    conn: asyncpg.Connection, dsn: str, done_table: None
) -> None:
    async def run(ctx: JobContext) -> Finalizer:
        recorded = record_completion(ctx, "w")

        async def finalize(conn: Connection) -> None:
            await recorded(conn)
            if ctx.ref_id == 3 and ctx.attempt == 1:
                await conn.execute("SELECT 1 / 0")

        return finalize

    async with running_engine(dsn, [JobType("t", run, backoff=lambda a: 0.0)], ack_interval_s=0.2):
        await enqueue_many(conn, "t", ref_ids=range(6))
        await wait_until(lambda: queue_empty(conn))
    await assert_done_exactly_once(conn, range(6))
    attempts = await conn.fetch("SELECT ref_id, attempt FROM queue_test_done ORDER BY ref_id")
    assert [r["attempt"] for r in attempts] == [1, 1, 1, 2, 1, 1]


async def test_a_hanging_finalizer_is_cut_off_and_retried(
    conn: asyncpg.Connection, dsn: str, done_table: None
) -> None:
    async def run(ctx: JobContext) -> Finalizer:
        recorded = record_completion(ctx, "w")

        async def finalize(conn: Connection) -> None:
            await recorded(conn)
            if ctx.attempt == 1:
                await asyncio.sleep(30)  # never returns in time

        return finalize

    job_type = JobType("t", run, backoff=lambda a: 0.0)
    async with running_engine(dsn, [job_type], statement_timeout_s=0.3, poll_interval_s=0.05):
        await enqueue(conn, "t", ref_id=1)
        await wait_until(lambda: queue_empty(conn))
    rows = await conn.fetch("SELECT attempt FROM queue_test_done")
    assert [r["attempt"] for r in rows] == [2]


async def test_a_failing_on_exhausted_is_retried_without_running_the_job(
    conn: asyncpg.Connection, dsn: str
) -> None:
    runs: list[int] = []
    calls: list[tuple[int, str]] = []

    async def run(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        raise PermanentFailure("nope")

    async def on_exhausted(conn: Connection, ctx: JobContext, error: str) -> None:
        calls.append((ctx.attempt, error))
        if len(calls) == 1:
            raise RuntimeError("database of record unavailable")

    job_type = JobType("t", run, on_exhausted, backoff=lambda a: 0.0)
    async with running_engine(dsn, [job_type], poll_interval_s=0.05):
        await enqueue(conn, "t", max_attempts=2)
        await wait_until(lambda: queue_empty(conn))
    assert runs == [1]
    assert calls == [(1, "nope"), (3, "nope")]  # the second call is on a claim past the limit


async def test_a_job_whose_worker_died_on_its_last_attempt_is_exhausted(
    conn: asyncpg.Connection, dsn: str
) -> None:
    failures = Failures(lambda ctx: None, max_attempts=2)
    await conn.execute(
        "INSERT INTO jobs (kind, state, attempts, lease_token, locked_until, worker_id)"
        " VALUES ('t', 1, 2, nextval('jobs_lease_token_seq'), now() - interval '1 s', 'gone')"
    )
    async with running_engine(dsn, [failures.job_type]):
        await wait_until(lambda: queue_empty(conn))
    assert failures.runs == []
    assert failures.exhausted == [(3, "lease expired during the final attempt (2)")]
