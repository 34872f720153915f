"""The worker side of the job engine: per process one fetcher, one heartbeat, one ack buffer.

No transaction is open while a job runs: the claim commits, the handler runs in its own task
under a timeout shorter than the lease, and its outcome is written later, in a batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from types import TracebackType

import asyncpg
from prometheus_client import CollectorRegistry

from service.queue import store
from service.queue.acks import AckBuffer, Claimed, Outcome, Result, describe, failed
from service.queue.listener import Listener
from service.queue.metrics import EngineMetrics
from service.queue.types import (
    EngineConfig,
    JobContext,
    JobType,
    PermanentFailure,
    RetryLater,
    retry_pause,
)

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        job_types: Sequence[JobType],
        config: EngineConfig,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        config.check(list(job_types))
        self.config = config
        self.metrics = EngineMetrics(registry)
        self._track_depth = registry is not None
        self._pool = pool
        self._types = {job_type.name: job_type for job_type in job_types}
        self._kinds = sorted(self._types)
        self._held: dict[int, Claimed] = {}  # by lease token: unique per claim
        self._low_water = max(1, min(config.claim_batch, config.workers) // 4)
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()
        self._stopping = False
        self._write_lock = asyncio.Lock()  # heartbeats and acks never interleave
        self._acks = AckBuffer(
            pool,
            interval_s=config.ack_interval_s,
            batch=config.ack_batch,
            statement_timeout_s=config.statement_timeout_s,
            acquire_timeout_s=config.acquire_timeout_s,
            write_lock=self._write_lock,
            on_written=self._written,
        )
        self._listener = Listener(dsn, store.CHANNEL, self.notify_local)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def is_listening(self) -> bool:
        return self._listener.connected.is_set()

    def notify_local(self) -> None:
        """Claim now: call after committing an enqueue in this process (or on NOTIFY)."""
        self._wake.set()

    async def start(self) -> None:
        self._acks.start()
        self._listener.start()
        loops = [self._fetch_loop(), self._heartbeat_loop()]
        if self._track_depth:
            loops.append(self._depth_loop())
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to the drain timeout), write their
        outcomes, give the unfinished ones back to the queue; heartbeats stop last."""
        if self._stopping or not self._tasks:
            return
        self._stopping = True
        self._wake.set()
        self._capacity.set()
        fetcher, *others = self._tasks
        await fetcher
        await self._listener.stop()
        await self._drain()
        await self._acks.close(self.config.drain_timeout_s + self.config.statement_timeout_s)
        await self._release()
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # --- claiming ---

    def _free(self) -> int:
        return self.config.workers - len(self._held)

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            if self._free() < self._low_water:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            self._wake.clear()
            want = min(self._free(), self.config.claim_batch)
            try:
                got = await self._claim(want)
            except Exception as exc:
                failures += 1
                log.warning("claiming jobs failed: %r", exc)
                await self._idle(retry_pause(failures))
                continue
            failures = 0
            if got < want:  # the queue is drained: wait for a notification or the next poll
                await self._idle(self.config.poll_interval_s * random.uniform(0.8, 1.2))

    async def _idle(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._wake.wait()

    async def _claim(self, limit: int) -> int:
        config = self.config
        async with self._pool.acquire(timeout=config.acquire_timeout_s) as conn:
            rows = await store.claim_jobs(
                conn,
                kinds=self._kinds,
                limit=limit,
                lease_s=config.lease_s,
                worker_id=config.worker_id,
                timeout_s=config.statement_timeout_s,
            )
        kinds: collections.Counter[str] = collections.Counter()
        for row in rows:
            kinds[row["kind"]] += 1
            self._start(row)
        for kind, count in kinds.items():
            self.metrics.claimed.labels(kind).inc(count)
        self.metrics.in_flight.set(len(self._held))
        return len(rows)

    def _start(self, row: asyncpg.Record) -> None:
        job_type = self._types[row["kind"]]
        max_attempts = row["max_attempts"] or job_type.max_attempts or self.config.max_attempts
        ctx = JobContext(
            job_id=row["id"],
            kind=row["kind"],
            ref_id=row["ref_id"],
            payload=row["payload"],
            attempt=row["attempts"],
            max_attempts=max_attempts,
            lease_token=row["lease_token"],
        )
        job = Claimed(ctx, job_type)
        self._held[ctx.lease_token] = job
        if row["reclaimed"]:
            self.metrics.reclaimed.labels(ctx.kind).inc()
        else:
            self.metrics.pickup.labels(ctx.kind).observe(row["waited_s"])
        if ctx.attempt > max_attempts:
            # Its worker died during the last attempt, or on_exhausted failed: no more runs.
            lost = f"lease expired during the final attempt ({max_attempts})"
            error = lost if row["reclaimed"] else row["last_error"] or lost
            self._acks.add(failed(job, error, permanent=True))
            return
        job.task = asyncio.create_task(self._run(job), name=f"job-{ctx.kind}-{ctx.job_id}")

    # --- running ---

    async def _run(self, job: Claimed) -> None:
        started = time.monotonic()
        outcome = await self._execute(job)
        self.metrics.duration.labels(job.ctx.kind).observe(time.monotonic() - started)
        self._acks.add(outcome)

    async def _execute(self, job: Claimed) -> Outcome:
        ctx, job_type = job.ctx, job.job_type
        timeout_s = job_type.timeout_s or self.config.timeout_s
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                finalizer = await job_type.run(ctx)
        except RetryLater as exc:
            return failed(job, exc.error, retry_in_s=exc.delay_s)
        except PermanentFailure as exc:
            return failed(job, exc.error, permanent=True)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError) and deadline.expired()
            error = f"timed out after {timeout_s:g} s" if timed_out else describe(exc)
            log.warning(
                "%s job %d attempt %d/%d failed: %s",
                *(ctx.kind, ctx.job_id, ctx.attempt, ctx.max_attempts, error),
                exc_info=not timed_out,
            )
            return failed(job, error)
        return Outcome(job, finalizer=finalizer)

    def _written(self, results: list[tuple[Result, Outcome]]) -> None:
        """Called by the ack buffer (under the write lock) once outcomes are committed."""
        tally: collections.Counter[tuple[Result, str]] = collections.Counter()
        failures: collections.Counter[str] = collections.Counter()
        for result, outcome in results:
            ctx = outcome.job.ctx
            self._held.pop(ctx.lease_token, None)
            tally[result, ctx.kind] += 1
            if outcome.error is not None and result is not Result.STALE:
                failures[ctx.kind] += 1
        counters = {
            Result.COMPLETED: self.metrics.completed,
            Result.RETRIED: self.metrics.retried,
            Result.EXHAUSTED: self.metrics.exhausted,
            Result.STALE: self.metrics.stale,
        }
        for (result, kind), count in tally.items():
            counters[result].labels(kind).inc(count)
        for kind, count in failures.items():
            self.metrics.failed.labels(kind).inc(count)
        self.metrics.in_flight.set(len(self._held))
        self._capacity.set()

    # --- leases ---

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while True:
            pause = self.config.heartbeat_s
            await asyncio.sleep(min(pause, retry_pause(failures)) if failures else pause)
            try:
                await self._beat()
            except Exception as exc:
                failures += 1
                log.warning("extending job leases failed: %r", exc)
            else:
                failures = 0

    async def _beat(self) -> None:
        config = self.config
        async with self._write_lock:
            held = list(self._held.values())
            if not held:
                return
            async with self._pool.acquire(timeout=config.acquire_timeout_s) as conn:
                alive = await store.extend_leases(
                    conn,
                    ids=[job.ctx.job_id for job in held],
                    tokens=[job.ctx.lease_token for job in held],
                    lease_s=config.lease_s,
                    timeout_s=config.statement_timeout_s,
                )
            for job in held:
                if job.ctx.lease_token not in alive:
                    self._lost(job)

    def _lost(self, job: Claimed) -> None:
        """The lease is gone (another worker has the job): stop running it, write nothing."""
        if job.task is None or job.task.done():
            return  # its outcome is waiting for the ack buffer, which will refuse it
        log.warning("lost the lease of %s job %d; cancelling it", job.ctx.kind, job.ctx.job_id)
        job.task.cancel()
        self._held.pop(job.ctx.lease_token, None)
        self.metrics.stale.labels(job.ctx.kind).inc()
        self.metrics.in_flight.set(len(self._held))
        self._capacity.set()

    async def _depth_loop(self) -> None:
        config = self.config
        while True:
            try:
                async with self._pool.acquire(timeout=config.acquire_timeout_s) as conn:
                    depth = await store.queue_depth(conn, timeout_s=config.statement_timeout_s)
                self.metrics.set_depth(*depth)
            except Exception as exc:
                log.warning("reading the queue depth failed: %r", exc)
            await asyncio.sleep(config.depth_interval_s)

    # --- shutdown ---

    async def _drain(self) -> None:
        tasks = [job.task for job in self._held.values() if job.task and not job.task.done()]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.config.drain_timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _release(self) -> None:
        """Give unfinished jobs back at once, without using up their attempt."""
        held = list(self._held.values())
        self._held.clear()
        if not held:
            return
        config = self.config
        try:
            async with (
                self._write_lock,
                self._pool.acquire(timeout=config.acquire_timeout_s) as conn,
            ):
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
