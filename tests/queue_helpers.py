"""Shared pieces of the job engine tests: a completion log written by finalizers, engines on
their own pools, and polling helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from service import db
from service.data import Connection
from service.queue import Engine, EngineConfig, Finalizer, JobContext, JobType

# No unique constraint on purpose: a duplicate completion must show up, not be refused.
DONE_TABLE = """
CREATE TABLE IF NOT EXISTS queue_test_done (
    ref_id bigint NOT NULL,
    job_id bigint NOT NULL,
    lease_token bigint NOT NULL,
    attempt int NOT NULL,
    worker text NOT NULL,
    done_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


@pytest.fixture
async def done_table(conn: asyncpg.Connection) -> None:
    """The ``queue_test_done`` table, for tests that take it as a fixture (see conftest)."""
    await conn.execute(DONE_TABLE)


def record_completion(ctx: JobContext, worker: str) -> Finalizer:
    async def finalize(conn: Connection) -> None:
        await conn.execute(
            "INSERT INTO queue_test_done (ref_id, job_id, lease_token, attempt, worker)"
            " VALUES ($1, $2, $3, $4, $5)",
            *(ctx.ref_id, ctx.job_id, ctx.lease_token, ctx.attempt, worker),
        )

    return finalize


def recording_type(name: str = "record", *, delay_s: float = 0.0, worker: str = "") -> JobType:
    """A job type whose finalizer logs each completion in ``queue_test_done``."""

    async def run(ctx: JobContext) -> Finalizer:
        if delay_s:
            await asyncio.sleep(delay_s)
        return record_completion(ctx, worker)

    return JobType(name, run)


def engine_config(**overrides: Any) -> EngineConfig:
    values: dict[str, Any] = {
        "workers": 8,
        "lease_s": 3.0,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "poll_interval_s": 0.2,
        "drain_timeout_s": 2.0,
        "ack_interval_s": 0.01,
        "statement_timeout_s": 5.0,
        "acquire_timeout_s": 5.0,
    }
    values.update(overrides)
    return EngineConfig(**values)


@asynccontextmanager
async def running_engine(
    dsn: str,
    job_types: Sequence[JobType],
    *,
    registry: CollectorRegistry | None = None,
    **overrides: Any,
) -> AsyncIterator[Engine]:
    """An engine on a pool of its own (as in a separate process), stopped on exit."""
    pool = await db.create_pool(dsn, min_size=1, max_size=5, timeout_s=30)
    try:
        engine = Engine(pool, dsn, job_types, engine_config(**overrides), registry=registry)
        async with engine:
            yield engine
    finally:
        await pool.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, every_s: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(every_s)


async def count(conn: asyncpg.Connection, sql: str, *args: Any) -> int:
    value: int = await conn.fetchval(sql, *args)
    return value


async def queue_empty(conn: asyncpg.Connection) -> bool:
    return await count(conn, "SELECT count(*) FROM jobs") == 0


async def assert_done_exactly_once(conn: asyncpg.Connection, ref_ids: Sequence[int]) -> None:
    rows = await conn.fetch("SELECT ref_id, count(*) AS n FROM queue_test_done GROUP BY ref_id")
    seen = {row["ref_id"]: row["n"] for row in rows}
    duplicates = {ref: n for ref, n in seen.items() if n > 1}
    assert not duplicates, f"completed more than once: {sorted(duplicates.items())[:10]}"
    missing = set(ref_ids) - set(seen)
    assert not missing, f"never completed: {sorted(missing)[:10]} ({len(missing)} in all)"
    assert set(seen) == set(ref_ids)


def sample(registry: CollectorRegistry, name: str, kind: str) -> float:
    return registry.get_sample_value(name, {"kind": kind}) or 0.0


async def equals(value: float, expected: float) -> bool:
    """For ``wait_until(lambda: equals(...))`` on a plain value."""
    return value == expected
