"""Background jobs (emails) wait while a worker holds foreground work, for a bounded time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from service.queue import JobContext, JobType, enqueue
from service.queue.store import BACKGROUND
from tests.queue_helpers import equals, running_engine, wait_until


class Gate:
    """A foreground job that runs until the test opens the gate, and a background job that
    notes when it ran."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.foreground_started = asyncio.Event()
        self.background_ran: asyncio.Queue[float] = asyncio.Queue()

    def job_types(self) -> list[JobType]:
        async def foreground(ctx: JobContext) -> None:
            self.foreground_started.set()
            await self.opened.wait()

        async def background(ctx: JobContext) -> None:
            self.background_ran.put_nowait(time.monotonic())

        return [JobType("render", foreground), JobType("mail", background)]

    async def background_within(self, seconds: float) -> float | None:
        try:
            return await asyncio.wait_for(self.background_ran.get(), seconds)
        except TimeoutError:
            return None


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.opened.set()  # a failed test must not leave the engine's drain waiting


async def _mail_while_rendering(conn: asyncpg.Connection, gate: Gate) -> None:
    """A background job enqueued once the engine holds a foreground job (a claim finding
    both ready while idle takes both: see the last test)."""
    await enqueue(conn, "render")
    await asyncio.wait_for(gate.foreground_started.wait(), 5)
    await enqueue(conn, "mail", priority=BACKGROUND)


async def test_background_jobs_wait_for_the_foreground_then_go_at_once(
    conn: asyncpg.Connection, dsn: str, gate: Gate
) -> None:
    async with running_engine(dsn, gate.job_types(), poll_interval_s=5, background_defer_s=60):
        await _mail_while_rendering(conn, gate)
        assert await gate.background_within(1.0) is None  # free slots, yet it waits
        opened = time.monotonic()
        gate.opened.set()
        ran = await gate.background_within(3.0)
        # woken by the foreground's ack, not by the next poll five seconds later
        assert ran is not None and ran - opened < 2.0


async def test_background_jobs_wait_no_longer_than_the_deferral(
    conn: asyncpg.Connection, dsn: str, gate: Gate
) -> None:
    job_types = gate.job_types()
    async with running_engine(dsn, job_types, poll_interval_s=0.1, background_defer_s=1.0):
        await _mail_while_rendering(conn, gate)
        started = time.monotonic()
        ran = await gate.background_within(5.0)
        assert ran is not None and ran - started >= 0.5  # overdue, the foreground still held
        assert not gate.opened.is_set()


async def test_no_deferral_runs_background_jobs_beside_the_foreground(
    conn: asyncpg.Connection, dsn: str, gate: Gate
) -> None:
    async with running_engine(dsn, gate.job_types(), poll_interval_s=0.1, background_defer_s=0):
        await _mail_while_rendering(conn, gate)
        assert await gate.background_within(3.0) is not None
        assert gate.foreground_started.is_set()


async def test_an_idle_worker_takes_background_jobs_after_the_foreground(
    conn: asyncpg.Connection, dsn: str
) -> None:
    order: list[str] = []

    async def run(ctx: JobContext) -> None:
        order.append(ctx.kind)

    job_types = [JobType("render", run), JobType("mail", run)]
    async with conn.transaction():  # one claim sees both
        await enqueue(conn, "mail", priority=BACKGROUND)
        await enqueue(conn, "render")
    async with running_engine(dsn, job_types, workers=1, poll_interval_s=0.1):
        await wait_until(lambda: equals(len(order), 2), timeout_s=5)
    assert order == ["render", "mail"]
