"""Periodic housekeeping, safe in every replica at once: expired uploads, old rate-limit
windows and idempotency keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from service import ratelimit
from service.data import certificates as certificate_data
from service.data import idempotency as key_data
from service.files.base import FileStore, StorageError
from service.keys import POOL, SETTINGS
from service.resources import FILES
from service.uploads import sweep_expired

log = logging.getLogger(__name__)
TRANSIENT = (OSError, StorageError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def run_once(pool: asyncpg.Pool, files: FileStore) -> None:
    swept = await sweep_expired(pool, files)
    async with pool.acquire() as conn:
        windows = purged = await ratelimit.purge_expired(conn)
        while purged == ratelimit.PURGE_BATCH:
            purged = await ratelimit.purge_expired(conn)
            windows += purged
        keys = await key_data.purge_expired(conn)
        await certificate_data.compact_counts(conn)
    if swept or keys:
        log.info(
            "housekeeping: %d expired uploads, %d idempotency keys, %d rate windows",
            swept,
            keys,
            windows,
        )


async def run_forever(pool: asyncpg.Pool, files: FileStore, interval_s: float) -> None:
    while True:
        try:
            await run_once(pool, files)
        except TRANSIENT as exc:
            log.warning("housekeeping failed, will retry: %s", exc)
        await asyncio.sleep(interval_s)


async def maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    interval_s = app[SETTINGS].maintenance_interval_s
    task = asyncio.create_task(run_forever(app[POOL], app[FILES], interval_s), name="maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
