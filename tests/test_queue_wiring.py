"""Running the job engine inside the web app, standalone as a worker, and its metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from service import db
from service.config import Settings
from service.keys import DSN, POOL, SETTINGS
from service.queue import (
    ENGINE,
    JobContext,
    JobType,
    Shutdown,
    enqueue,
    enqueue_many,
    run_worker,
)
from service.queue.wiring import workers_ctx
from tests.queue_helpers import (
    DONE_TABLE,
    assert_done_exactly_once,
    queue_empty,
    recording_type,
    running_engine,
    wait_until,
)


def _app(settings: Settings, dsn: str) -> web.Application:
    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await db.create_pool(dsn, min_size=1, max_size=4, timeout_s=30)
        yield
        await app[POOL].close()

    app = web.Application()
    app[SETTINGS] = settings
    app[DSN] = dsn
    app.cleanup_ctx.append(pool_ctx)
    return app


async def _run_app(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts up to their yield
    return runner


async def test_workers_ctx_runs_an_engine_in_the_app(
    conn: asyncpg.Connection, dsn: str, settings: Settings
) -> None:
    await conn.execute(DONE_TABLE)
    registry = CollectorRegistry()
    app = _app(settings.with_overrides(workers=4, poll_interval_s=0.1), dsn)
    app.cleanup_ctx.append(workers_ctx(lambda app: [recording_type()], registry=registry))
    runner = await _run_app(app)
    try:
        engine = app[ENGINE]
        await enqueue_many(conn, "record", ref_ids=range(20))
        engine.notify_local()
        await wait_until(lambda: queue_empty(conn))
    finally:
        await runner.cleanup()
    await assert_done_exactly_once(conn, range(20))
    assert registry.get_sample_value("vault_jobs_completed_total", {"kind": "record"}) == 20
    assert engine.in_flight == 0


async def test_workers_ctx_without_workers_runs_no_engine(dsn: str, settings: Settings) -> None:
    app = _app(settings.with_overrides(workers=0), dsn)
    app.cleanup_ctx.append(workers_ctx([recording_type()]))
    runner = await _run_app(app)
    try:
        assert ENGINE not in app
    finally:
        await runner.cleanup()


async def test_run_worker_until_stopped(
    conn: asyncpg.Connection, dsn: str, settings: Settings
) -> None:
    await conn.execute(DONE_TABLE)
    await enqueue_many(conn, "record", ref_ids=range(50))
    shutdown = Shutdown()
    worker_settings = settings.with_overrides(workers=4, poll_interval_s=0.1)
    worker = asyncio.create_task(run_worker(worker_settings, dsn, [recording_type()], shutdown))
    try:
        await wait_until(lambda: queue_empty(conn))
    finally:
        shutdown.signalled()
        await asyncio.wait_for(worker, 10)
    await assert_done_exactly_once(conn, range(50))


async def test_metrics_are_exposed_in_the_given_registry(
    conn: asyncpg.Connection, dsn: str
) -> None:
    async def run(ctx: JobContext) -> None:
        return None

    await enqueue_many(conn, "elsewhere", ref_ids=range(7))  # a kind this engine does not run
    registry = CollectorRegistry()
    async with running_engine(dsn, [JobType("t", run)], registry=registry, depth_interval_s=0.05):
        await enqueue(conn, "t")
        await wait_until(lambda: _completed(registry))
        await asyncio.sleep(0.2)
        text = generate_latest(registry).decode()
    assert 'vault_jobs_queue_depth{state="ready"} 7.0' in text
    assert 'vault_jobs_claimed_total{kind="t"} 1.0' in text
    assert 'vault_job_duration_seconds_count{kind="t"} 1.0' in text
    assert 'vault_job_pickup_latency_seconds_bucket{kind="t",le="+Inf"} 1.0' in text
    assert "vault_jobs_in_flight 0.0" in text


async def _completed(registry: CollectorRegistry) -> bool:
    return registry.get_sample_value("vault_jobs_completed_total", {"kind": "t"}) == 1
