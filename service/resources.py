"""Cleanup contexts for the resources beside the database: file store and CPU process pool."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

from aiohttp import web

from service.config import Settings
from service.files.base import FileStore
from service.files.factory import open_file_store
from service.keys import SETTINGS

P = ParamSpec("P")
T = TypeVar("T")

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


class CpuPool:
    """A process pool that replaces itself when a worker dies (a hostile file can crash one)."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._executor = self._open()
        # Work that waits for a process holds its input in memory: let only a few wait.
        self.slots = asyncio.Semaphore(processes * 2)
        # One task per process at a time: nothing queues inside the executor, so a time limit
        # counts only running time and a pool killed for a timeout cancels no queued call.
        # (Letting one more task per process wait there was ~10 % faster for renders, but
        # made good renders time out behind slow ones.)
        self._running = asyncio.Semaphore(processes)

    def _open(self) -> ProcessPoolExecutor:
        # forkserver: the workers inherit none of this process's threads, event loop or sockets.
        context = multiprocessing.get_context("forkserver")
        return ProcessPoolExecutor(max_workers=self._processes, mp_context=context)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._running:
            return await self._submit(partial(fn, *args, **kwargs))

    async def _submit(self, call: Callable[[], T]) -> T:
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except BrokenProcessPool:
            self._replace(executor)
            raise

    async def run_limited(
        self, timeout_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``run``, but a call past ``timeout_s`` (or cancelled) has its processes killed (a
        cancelled future would leave the work running); past ``timeout_s`` it raises
        TimeoutError."""
        async with self._running:  # the clock starts when a process is free
            executor = self._executor
            try:
                return await asyncio.wait_for(self._submit(partial(fn, *args, **kwargs)), timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                # cancelled (the job's own deadline, a shutdown) or late: the work would go on
                # in its process, and the next call would queue behind it
                self._replace(executor, kill=True)
                raise

    def _replace(self, executor: ProcessPoolExecutor, *, kill: bool = False) -> None:
        if self._executor is not executor:
            return  # someone else already replaced it
        self._executor = self._open()
        if kill:
            # no public API stops a running task; the processes are the executor's own
            for process in list(getattr(executor, "_processes", {}).values()):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


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
