"""Running the engine: inside the web app (a cleanup context) or standalone (the worker command)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry

from service import db
from service.config import Settings
from service.keys import DSN, POOL, SETTINGS
from service.queue.engine import Engine
from service.queue.types import EngineConfig, JobType

log = logging.getLogger(__name__)

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


class Shutdown:
    """What signals ask of a process: the first, a graceful stop (running jobs may finish, up
    to DRAIN_TIMEOUT_S); any later one, a quick stop (running jobs are given back at once)."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurried = asyncio.Event()
        self.running = asyncio.Event()  # the engine has started: a stop is a drain from now on

    def signalled(self) -> None:
        if not self.requested.is_set():
            log.info("stopping: running jobs may finish; signal again to stop at once")
            self.requested.set()
        elif not self.hurried.is_set():
            log.warning("stopping at once: running jobs go back to the queue")
            self.hurried.set()

    def on_signals(self) -> None:
        """Listen for SIGTERM and SIGINT (call from the running loop)."""
        on_signals(self.signalled)


async def run_worker(
    settings: Settings,
    dsn: str,
    job_types: PoolJobTypes,
    shutdown: Shutdown,
    *,
    pool: asyncpg.Pool | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run an engine until a shutdown is requested, then stop it (quickly, if hurried).

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
        engine = Engine(pool, dsn, types, config, registry=registry)
        hurry = asyncio.create_task(_call_when(shutdown.hurried, engine.hurry))
        try:
            async with engine:
                shutdown.running.set()
                await shutdown.requested.wait()
        finally:
            hurry.cancel()
    finally:
        if own_pool:
            await pool.close()


def on_signals(action: Callable[[], None]) -> None:
    """Call ``action`` on SIGTERM and SIGINT (from the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, action)


async def until_started_or_stopped(shutdown: Shutdown, work: Awaitable[None]) -> None:
    """Run ``work`` (a process's whole life: start-up, engine, stop). A stop asked for before
    the engine runs (say, while start-up waits for another process's migration lock) cuts
    start-up short instead of waiting for it; after, the engine drains as usual."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(shutdown.requested.wait())
    cut_short = False
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not shutdown.running.is_set():
            log.info("stopping during start-up")
            cut_short = True
            task.cancel()
        await task
    except asyncio.CancelledError:
        if not cut_short:
            raise
    finally:
        stop.cancel()


async def _call_when(event: asyncio.Event, action: Callable[[], None]) -> None:
    await event.wait()
    action()
