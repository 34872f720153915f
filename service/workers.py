"""``vault-service worker``: the job engine without the HTTP API, with the same resources."""

from __future__ import annotations

import logging

from service import db, jobs
from service.config import Settings
from service.cpupool import CpuPool
from service.queue.wiring import Shutdown, run_worker, until_started_or_stopped
from service.resources import cpu_processes, file_store, use_io_threads
from service.webhooks.ssrf import make_client_session

log = logging.getLogger(__name__)


async def run_standalone(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain in-flight jobs and stop (at once on a second;
    during start-up, start-up stops)."""
    shutdown = Shutdown()
    shutdown.on_signals()
    await until_started_or_stopped(shutdown, _run(settings, shutdown))


async def _run(settings: Settings, shutdown: Shutdown) -> None:
    use_io_threads(settings.io_threads)
    async with db.database_url(settings.database_url, settings.data_dir) as dsn:
        pool = await db.create_pool(
            dsn,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout_s=settings.db_command_timeout_s,
        )
        cpu = CpuPool(cpu_processes(settings))
        try:
            if settings.migrate_on_start:
                async with pool.acquire() as conn:
                    await db.migrate(conn)
            http = make_client_session(
                allow_private=settings.webhooks_allow_private,
                timeout_s=settings.webhook_timeout_s,
            )
            async with file_store(settings) as files, http:
                deps = jobs.Deps(pool=pool, files=files, cpu=cpu, settings=settings, http=http)
                log.info("worker started: %d jobs in flight at most", settings.workers)
                await run_worker(settings, dsn, jobs.job_types(deps), shutdown, pool=pool)
        finally:
            await cpu.close()
            await pool.close()
