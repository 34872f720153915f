"""Running the engine: inside the web app (a cleanup context) or standalone (the worker command)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from service import db
from service.config import Settings
from service.keys import DSN, POOL, SETTINGS
from service.queue.engine import Engine
from service.queue.types import EngineConfig, JobType

ENGINE = web.AppKey("queue_engine", Engine)

AppJobTypes = Sequence[JobType] | Callable[[web.Application], Sequence[JobType]]
PoolJobTypes = Sequence[JobType] | Callable[[asyncpg.Pool], Sequence[JobType]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def workers_ctx(
    job_types: AppJobTypes, *, registry: CollectorRegistry | None = None
) -> CleanupContext:
    """A cleanup context running an engine in the app when ``settings.workers > 0``.

    ``job_types`` may be a function of the app, called once the earlier contexts have run.
    Place it after the pool's context: contexts exit in reverse, so jobs drain first.
    """

    async def queue_workers_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if settings.workers <= 0:
            yield
            return
        types = job_types(app) if callable(job_types) else job_types
        engine = Engine(
            app[POOL], app[DSN], types, EngineConfig.from_settings(settings), registry=registry
        )
        await engine.start()
        app[ENGINE] = engine
        try:
            yield
        finally:
            await engine.stop()

    return queue_workers_ctx


async def run_worker(
    settings: Settings,
    dsn: str,
    job_types: PoolJobTypes,
    stop_event: asyncio.Event,
    *,
    pool: asyncpg.Pool | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run an engine until ``stop_event`` is set, then stop it gracefully.

    Without ``pool`` one is created from the settings (and migrations run if configured).
    """
    own_pool = pool is None
    if pool is None:
        pool = await db.create_pool(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout_s=settings.db_command_timeout_s,
        )
    try:
        if own_pool and settings.migrate_on_start:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        types = job_types(pool) if callable(job_types) else job_types
        config = EngineConfig.from_settings(settings)
        async with Engine(pool, dsn, types, config, registry=registry):
            await stop_event.wait()
    finally:
        if own_pool:
            await pool.close()


def stop_on_signals(stop_event: asyncio.Event) -> None:
    """Set ``stop_event`` on SIGTERM or SIGINT (call from the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_event.set)
