"""The job engine's wake-ups: NOTIFY, a killed listener, and notify_local without LISTEN."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from service.queue import JobContext, JobType, enqueue
from tests.queue_helpers import equals, running_engine, wait_until


async def _pickup_latency(conn: asyncpg.Connection, picked: asyncio.Queue[float]) -> float:
    await enqueue(conn, "t")  # autocommit: committed when this returns
    committed = time.perf_counter()
    return await asyncio.wait_for(picked.get(), 3) - committed


def _timestamping(picked: asyncio.Queue[float]) -> JobType:
    async def run(ctx: JobContext) -> None:
        picked.put_nowait(time.perf_counter())

    return JobType("t", run)


async def test_notify_wakes_the_engine_well_before_the_poll(
    conn: asyncpg.Connection, dsn: str
) -> None:
    picked: asyncio.Queue[float] = asyncio.Queue()
    async with running_engine(dsn, [_timestamping(picked)], poll_interval_s=5) as engine:
        await wait_until(lambda: equals(engine.is_listening(), True))
        await asyncio.sleep(0.1)  # past the claim the connect triggers
        latencies = [await _pickup_latency(conn, picked) for _ in range(5)]
    assert max(latencies) < 1.0, latencies


async def test_a_killed_listener_does_not_stall_processing(
    conn: asyncpg.Connection, dsn: str
) -> None:
    picked: asyncio.Queue[float] = asyncio.Queue()
    pid_sql = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE application_name = 'vault-queue-listener' AND datname = current_database()"
    )
    async with running_engine(dsn, [_timestamping(picked)], poll_interval_s=0.5) as engine:
        await wait_until(lambda: equals(engine.is_listening(), True))
        old_pid = await conn.fetchval(pid_sql)
        await conn.execute("SELECT pg_terminate_backend($1)", old_pid)
        assert await _pickup_latency(conn, picked) < 2.0
        await wait_until(lambda: equals(engine.is_listening(), True))
        assert await conn.fetchval(pid_sql) not in (None, old_pid)
        await asyncio.sleep(0.1)
        assert await _pickup_latency(conn, picked) < 1.0


async def test_notify_local_wakes_a_polling_engine(conn: asyncpg.Connection, dsn: str) -> None:
    picked: asyncio.Queue[float] = asyncio.Queue()
    job_types = [_timestamping(picked)]
    async with running_engine(dsn, job_types, listen=False, poll_interval_s=5) as engine:
        await asyncio.sleep(0.2)
        assert not engine.is_listening()
        await enqueue(conn, "t")
        committed = time.perf_counter()
        engine.notify_local()
        assert await asyncio.wait_for(picked.get(), 3) - committed < 1.0
