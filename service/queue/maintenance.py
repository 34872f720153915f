"""Chores of a busy queue: vacuuming the job table while it churns, and reading its depth.

Claims walk the ready index from its start, so the entries of claimed jobs slow every claim
until a vacuum removes them; autovacuum wakes at most once a minute and may be busy elsewhere.
The engine therefore vacuums the table itself after every ``vacuum_after_jobs`` deletions.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from service.queue import store
from service.queue.metrics import EngineMetrics
from service.queue.types import EngineConfig

log = logging.getLogger(__name__)

VACUUM_TIMEOUT_S = 120.0


class Maintenance:
    def __init__(self, pool: asyncpg.Pool, config: EngineConfig, metrics: EngineMetrics) -> None:
        self._pool = pool
        self._config = config
        self._metrics = metrics
        self._deleted = 0
        self._due = asyncio.Event()

    def deleted(self, count: int) -> None:
        """Count job rows this engine deleted; a vacuum is due past the threshold."""
        self._deleted += count
        threshold = self._config.vacuum_after_jobs
        if threshold and self._deleted >= threshold:
            self._due.set()

    async def vacuum_loop(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            self._deleted = 0
            started = time.monotonic()
            try:
                async with self._pool.acquire(timeout=self._config.acquire_timeout_s) as conn:
                    await store.vacuum_jobs(conn, timeout_s=VACUUM_TIMEOUT_S)
                log.debug("vacuumed jobs in %.0f ms", (time.monotonic() - started) * 1000)
            except Exception as exc:
                log.warning("vacuuming the job table failed: %r", exc)
            await asyncio.sleep(self._config.vacuum_min_interval_s)

    async def depth_loop(self) -> None:
        config = self._config
        while True:
            try:
                async with self._pool.acquire(timeout=config.acquire_timeout_s) as conn:
                    depth = await store.queue_depth(conn, timeout_s=config.statement_timeout_s)
                self._metrics.set_depth(*depth)
            except Exception as exc:
                log.warning("reading the queue depth failed: %r", exc)
            await asyncio.sleep(config.depth_interval_s)
