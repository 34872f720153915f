"""Taking, keeping and giving back the leases of the jobs a process holds.

Lease statements run on two connections of their own, so a busy application pool cannot
starve heartbeats, and commit without waiting for the WAL flush: a claim, heartbeat or
release lost in a server crash only makes a job run again, which a lease allows anyway.
One heartbeat statement every lease/3 extends every lease held (rows that no longer carry our
token are lost: their tasks are cancelled); a sweeper cancels jobs past their timeout
(cheaper than a timer per job); at shutdown one statement releases what did not finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import asyncpg
from asyncpg.pool import PoolAcquireContext

from service import db
from service.queue import store
from service.queue.outcomes import Claimed
from service.queue.types import EngineConfig, retry_pause

log = logging.getLogger(__name__)

SESSION = {
    "application_name": "vault-queue-leases",
    "synchronous_commit": "off",
    "idle_in_transaction_session_timeout": str(db.IDLE_IN_TRANSACTION_TIMEOUT_MS),
}


class LeaseKeeper:
    def __init__(
        self,
        dsn: str,
        config: EngineConfig,
        held: dict[int, Claimed],
        *,
        write_lock: asyncio.Lock,
        on_lost: Callable[[Claimed], None],
        sweep_s: float,
    ) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._config = config
        self._held = held
        self._lock = write_lock
        self._on_lost = on_lost
        self._sweep_s = sweep_s

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=2,
            command_timeout=self._config.statement_timeout_s,
            init=db.init_connection,
            reset=db.keep_session,  # claims and heartbeats leave no session state
            server_settings=SESSION,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connection(self) -> PoolAcquireContext:
        if self._pool is None:
            raise RuntimeError("the lease connections are not open")
        return self._pool.acquire(timeout=self._config.acquire_timeout_s)

    async def claim(
        self, *, kinds: Iterable[str], limit: int, reclaim: bool, defer_background: bool = False
    ) -> list[asyncpg.Record]:
        config = self._config
        async with self._connection() as conn:
            return await store.claim_jobs(
                conn,
                kinds=kinds,
                limit=limit,
                lease_s=config.lease_s,
                worker_id=config.worker_id,
                reclaim=reclaim,
                timeout_s=config.statement_timeout_s,
                defer_background_s=config.background_defer_s if defer_background else None,
            )

    async def heartbeat_loop(self) -> None:
        failures = 0
        while True:
            pause = self._config.heartbeat_s
            await asyncio.sleep(min(pause, retry_pause(failures)) if failures else pause)
            try:
                await self.beat()
            except Exception as exc:
                failures += 1
                log.warning("extending job leases failed: %r", exc)
            else:
                failures = 0

    async def beat(self) -> None:
        config = self._config
        # under the write lock: no ack flush can remove a job between snapshot and statement
        async with self._lock:
            held = list(self._held.values())
            if not held:
                return
            async with self._connection() as conn:
                alive = await store.extend_leases(
                    conn,
                    ids=[job.ctx.job_id for job in held],
                    tokens=[job.ctx.lease_token for job in held],
                    lease_s=config.lease_s,
                    timeout_s=config.statement_timeout_s,
                )
            for job in held:
                if job.ctx.lease_token not in alive:
                    self._on_lost(job)

    async def deadline_loop(self) -> None:
        """Cancel the jobs running past their timeout (to within ``sweep_s``)."""
        while True:
            await asyncio.sleep(self._sweep_s)
            now = time.monotonic()
            for job in list(self._held.values()):
                task = job.task
                if now >= job.deadline and task and not (task.done() or job.timed_out):
                    job.timed_out = True
                    task.cancel()

    async def release(self) -> None:
        """Give the unfinished jobs back at once, without using up their attempt."""
        held = list(self._held.values())
        self._held.clear()
        if not held:
            return
        config = self._config
        try:
            async with self._lock, self._connection() as conn:
                count = await store.release_jobs(
                    conn,
                    ids=[job.ctx.job_id for job in held],
                    tokens=[job.ctx.lease_token for job in held],
                    timeout_s=config.statement_timeout_s,
                )
            log.info("released %d unfinished jobs", count)
        except Exception as exc:
            log.warning(
                "releasing %d jobs failed (%r): they rerun when leases expire", len(held), exc
            )
