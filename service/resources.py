"""Cleanup contexts for the resources beside the database: file store and CPU process pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import ParamSpec, TypeVar

from aiohttp import web

from service.config import Settings
from service.files.base import FileStore
from service.files.factory import open_file_store
from service.keys import SETTINGS

P = ParamSpec("P")
T = TypeVar("T")

FILES = web.AppKey("files", FileStore)
CPU = web.AppKey("cpu", Executor)


def file_store(settings: Settings) -> AbstractAsyncContextManager[FileStore]:
    return open_file_store(
        settings.resolved_storage_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_access_key=settings.s3_access_key_id,
        s3_secret_key=settings.s3_secret_access_key,
    )


async def files_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    await asyncio.to_thread(settings.spool_dir.mkdir, parents=True, exist_ok=True)
    async with file_store(settings) as store:
        app[FILES] = store
        yield


def cpu_processes(settings: Settings) -> int:
    return settings.cpu_processes or os.cpu_count() or 1


def open_cpu_pool(settings: Settings) -> ProcessPoolExecutor:
    # forkserver: the workers inherit none of this process's threads, event loop or sockets.
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=cpu_processes(settings), mp_context=context)


async def cpu_ctx(app: web.Application) -> AsyncIterator[None]:
    """Validation and rendering are CPU work: a process pool keeps them off the event loop."""
    executor = open_cpu_pool(app[SETTINGS])
    app[CPU] = executor
    try:
        yield
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


async def run_cpu(executor: Executor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, partial(fn, *args, **kwargs))
