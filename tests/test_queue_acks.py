"""When the ack buffer flushes: at once only when the engine waits for capacity and few jobs
still run; otherwise outcomes wait for the next flush and share it."""

from __future__ import annotations

import asyncio

import asyncpg

from service.queue import JobContext, JobType, enqueue_many
from tests.queue_helpers import count, queue_empty, running_engine, wait_until

QUICK, SLOW = range(2)


async def test_outcomes_wait_for_the_flush_while_jobs_still_run(
    conn: asyncpg.Connection, dsn: str
) -> None:
    """Four slots, all taken: two quick jobs end while two slow ones run. The engine cannot
    claim, but enough still runs, so their acks wait (the interval is long). Once the slow
    ones end, nothing runs: the buffer flushes at once, long before the interval."""
    release = asyncio.Event()
    finished: list[int] = []

    async def run(ctx: JobContext) -> None:
        if ctx.ref_id == SLOW:
            await release.wait()
        finished.append(ctx.job_id)

    job_type = JobType("t", run)
    await enqueue_many(conn, "t", ref_ids=[QUICK, QUICK, SLOW, SLOW])
    config = {"workers": 4, "ack_interval_s": 60.0, "ack_batch": 100}
    async with running_engine(dsn, [job_type], **config):

        async def quick_ones_ended() -> bool:
            return len(finished) == 2

        await wait_until(quick_ones_ended)
        await asyncio.sleep(0.3)  # time enough for a flush that was due
        assert await count(conn, "SELECT count(*) FROM jobs") == 4
        release.set()
        await wait_until(lambda: queue_empty(conn), timeout_s=20)
