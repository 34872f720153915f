"""Cleanup contexts for the resources beside the database: file store and CPU process pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from aiohttp import web

from service.config import Settings
from service.cpupool import CpuPool
from service.files.base import FileStore
from service.files.factory import open_file_store
from service.keys import SETTINGS

FILES = web.AppKey("files", FileStore)


def file_store(settings: Settings) -> AbstractAsyncContextManager[FileStore]:
    return open_file_store(
        settings.resolved_storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_access_key=settings.s3_access_key_id,
        s3_secret_key=settings.s3_secret_access_key,
    )


def clear_stale_spool(directory: Path, older_than_s: float = 3600) -> None:
    """Spool files of uploads cut short by a killed process (a live upload is younger)."""
    directory.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - older_than_s
    for path in directory.glob("*.part"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


async def files_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    await asyncio.to_thread(clear_stale_spool, settings.spool_dir)
    async with file_store(settings) as store:
        app[FILES] = store
        yield


def use_io_threads(count: int) -> ThreadPoolExecutor:
    """A bigger default thread pool: file writes wait on fsync, and asyncio's default of
    cpu_count + 4 threads capped processing at what six fsyncing threads could do."""
    executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="io")
    asyncio.get_running_loop().set_default_executor(executor)
    return executor


async def io_threads_ctx(app: web.Application) -> AsyncIterator[None]:
    # The loop shuts its default executor down when it closes; doing it here would break
    # another app sharing the loop (tests run two) that has not finished cleaning up.
    use_io_threads(app[SETTINGS].io_threads)
    yield


def cpu_processes(settings: Settings) -> int:
    return settings.cpu_processes or os.cpu_count() or 1


CPU = web.AppKey("cpu", CpuPool)


# Uploads are validated in a pool of their own, so an interactive upload never queues behind
# a batch's rendering work.
INTAKE_CPU = web.AppKey("intake_cpu", CpuPool)
INTAKE_PROCESSES = 1


async def cpu_ctx(app: web.Application) -> AsyncIterator[None]:
    """Validation and rendering are CPU work: process pools keep them off the event loop."""
    render, intake = CpuPool(cpu_processes(app[SETTINGS])), CpuPool(INTAKE_PROCESSES)
    app[CPU], app[INTAKE_CPU] = render, intake
    try:
        yield
    finally:
        await asyncio.gather(render.close(), intake.close())
