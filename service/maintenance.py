"""Periodic housekeeping, safe in every replica at once: expired uploads, orphan files,
unpublished renders and unfinished ``.eml`` files, old rate-limit windows and idempotency
keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from aiohttp import web

from service import ratelimit
from service.config import Settings
from service.data import DATABASE_ERRORS, Connection
from service.data import certificates as certificate_data
from service.data import idempotency as key_data
from service.data import webhooks as webhook_data
from service.emails import sweep_scratch
from service.files.base import FileStore, StorageError
from service.files.local import LocalFileStore
from service.keys import POOL, SETTINGS
from service.resources import FILES
from service.uploads import sweep_expired, sweep_file_intents

log = logging.getLogger(__name__)
WEBHOOK_PURGE_BATCH = 10_000
# what a housekeeping round may meet and the next one retries (a file swept away meanwhile, too)
TRANSIENT = (*DATABASE_ERRORS, StorageError, OSError)
# A render's pending file lives milliseconds; one its job abandoned is done within the job's
# time limit. An hour is far beyond both.
PENDING_AGE_S = 3600


async def _until_done(purge: Callable[[], Awaitable[int]], batch: int) -> int:
    """Run a batched purge until a batch comes back short; return how many rows went."""
    total = purged = await purge()
    while purged >= batch:
        purged = await purge()
        total += purged
    return total


async def guarded(name: str, task: Callable[[], Awaitable[int]]) -> int:
    """One housekeeping task; its failure is logged and never stops the others."""
    try:
        return await task()
    except TRANSIENT as exc:
        log.warning("housekeeping: %s failed, will retry: %s", name, exc)
        return 0


async def run_once(pool: asyncpg.Pool, files: FileStore, settings: Settings) -> None:
    async def purge(conn: Connection) -> tuple[int, int, int]:
        windows = await guarded(
            "rate windows",
            lambda: _until_done(lambda: ratelimit.purge_expired(conn), ratelimit.PURGE_BATCH),
        )
        deliveries = await guarded(
            "webhook history",
            lambda: _until_done(
                lambda: webhook_data.purge_finished(
                    conn, older_than_s=settings.webhook_retention_s, limit=WEBHOOK_PURGE_BATCH
                ),
                WEBHOOK_PURGE_BATCH,
            ),
        )
        keys = await guarded("idempotency keys", lambda: key_data.purge_expired(conn))
        await guarded("list counts", lambda: _compact(conn))
        return windows, deliveries, keys

    swept = await guarded("expired uploads", lambda: sweep_expired(pool, files))
    swept += await guarded("orphan files", lambda: sweep_file_intents(pool, files))
    if isinstance(files, LocalFileStore):
        swept += await guarded("unpublished renders", lambda: files.sweep_pending(PENDING_AGE_S))
    swept += await guarded(
        "unfinished .eml files", lambda: asyncio.to_thread(sweep_scratch, settings.outbox_dir)
    )
    async with pool.acquire() as conn:
        windows, deliveries, keys = await purge(conn)
    if swept or keys or deliveries:
        log.info(
            "housekeeping: %d expired uploads, orphan files and unpublished renders,"
            " %d idempotency keys,"
            " %d rate windows, %d old webhook deliveries",
            swept,
            keys,
            windows,
            deliveries,
        )


async def _compact(conn: Connection) -> int:
    await certificate_data.compact_counts(conn)
    return 0


async def run_forever(pool: asyncpg.Pool, files: FileStore, settings: Settings) -> None:
    while True:
        try:
            await run_once(pool, files, settings)
        except TRANSIENT as exc:
            log.warning("housekeeping failed, will retry: %s", exc)
        await asyncio.sleep(settings.maintenance_interval_s)


async def maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        run_forever(app[POOL], app[FILES], app[SETTINGS]), name="maintenance"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
