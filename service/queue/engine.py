"""The worker side of the job engine: per process one fetcher, one heartbeat, one ack buffer.

No transaction is open while a job runs: the claim commits, the handler runs in its own task
(cancelled past its timeout, which is shorter than the lease), and its outcome is written
later, in a batch, only if the job still carries this claim's fencing token.
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
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from service.queue import store
from service.queue.acks import AckBuffer
from service.queue.leases import LeaseKeeper
from service.queue.listener import Listener
from service.queue.maintenance import Maintenance
from service.queue.metrics import EngineMetrics
from service.queue.outcomes import Claimed, Outcome, Result, describe, failed
from service.queue.types import (
    EngineConfig,
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
        self._timeouts = {t.name: t.timeout_s or config.timeout_s for t in job_types}
        self._held: dict[int, Claimed] = {}  # by lease token: unique per claim
        self._low_water = max(1, min(config.claim_batch, config.workers) // 4)
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()
        self._stopped: asyncio.Future[None] | None = None
        self._hurried = asyncio.Event()
        self._reclaim_every_s = min(1.0, config.lease_s / 10)
        self._reclaimed_at = 0.0
        self._deferring = False  # the last claim left background jobs to wait (if any)
        write_lock = asyncio.Lock()  # heartbeats and acks never interleave
        self._acks = AckBuffer(
            pool, config, write_lock=write_lock, on_written=self._written, urgent=self._acks_urgent
        )
        sweep_s = min(1.0, max(0.01, min(self._timeouts.values(), default=1.0) / 20))
        self._leases = LeaseKeeper(
            dsn, config, self._held, write_lock=write_lock, on_lost=self._lost, sweep_s=sweep_s
        )
        self._maintenance = Maintenance(pool, config, self.metrics)
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

    def hurry(self) -> None:
        """Stop waiting for running jobs: a stop under way gives them back at once."""
        self._hurried.set()

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def is_listening(self) -> bool:
        return self._listener.connected.is_set()

    def notify_local(self) -> None:
        """Claim now: call after committing an enqueue in this process (or on NOTIFY)."""
        self._wake.set()

    async def start(self) -> None:
        await self._leases.open()
        self._acks.start()
        if self.config.listen:
            self._listener.start()
        loops = [
            self._fetch_loop(),
            self._leases.heartbeat_loop(),
            self._leases.deadline_loop(),
            self._maintenance.vacuum_loop(),
        ]
        if self._track_depth:
            loops.append(self._maintenance.depth_loop())
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to the drain timeout), write their
        outcomes, give the unfinished ones back to the queue; heartbeats stop last. Every
        caller waits for the same stop, however many there are."""
        if not self._tasks:
            return
        self.begin_stop()
        assert self._stopped is not None
        await asyncio.shield(self._stopped)

    def begin_stop(self) -> None:
        """Start the stop (claims end now) without waiting for it."""
        if self._stopped is None and self._tasks:
            self._stopped = asyncio.ensure_future(self._stop())

    @property
    def _stopping(self) -> bool:
        return self._stopped is not None

    async def _stop(self) -> None:
        self._wake.set()
        self._capacity.set()
        fetcher, *others = self._tasks
        await fetcher
        await self._listener.stop()
        await self._drain()
        await self._acks.close(self.config.drain_timeout_s + self.config.statement_timeout_s)
        await self._leases.release()
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._leases.close()

    # --- claiming ---

    def _free(self) -> int:
        return self.config.workers - len(self._held)

    def _starved(self) -> bool:
        """Is claiming held back by slots that only wait for their ack?"""
        return self._free() < self._low_water

    def _busy(self) -> bool:
        """Does this process hold foreground jobs (background ones wait for them)?"""
        return not all(job.background for job in self._held.values())

    def _released(self) -> None:
        """Jobs left ``_held``: claim again at once if that freed claiming or background
        jobs that were waiting for the foreground."""
        self.metrics.in_flight.set(len(self._held))
        self._capacity.set()
        if self._deferring and not self._busy():
            self._wake.set()

    def _acks_urgent(self) -> bool:
        """Flush at once only when claiming is held back and few jobs still run: while
        enough run to keep the process busy, outcomes wait for the next flush and share it."""
        running = len(self._held) - len(self._acks)
        return self._starved() and running < self._low_water

    async def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            if self._starved():
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
        now = time.monotonic()
        reclaim = now - self._reclaimed_at >= self._reclaim_every_s
        self._deferring = self.config.background_defer_s > 0 and self._busy()
        rows = await self._leases.claim(
            kinds=self._types, limit=limit, reclaim=reclaim, defer_background=self._deferring
        )
        if reclaim:
            self._reclaimed_at = now
        kinds: collections.Counter[str] = collections.Counter()
        started = time.monotonic()
        for row in rows:
            kinds[row["kind"]] += 1
            self._start(row, started)
        for kind, count in kinds.items():
            self.metrics.kind(kind).claimed.inc(count)
        self.metrics.in_flight.set(len(self._held))
        return len(rows)

    def _start(self, row: asyncpg.Record, started: float) -> None:
        kind = row["kind"]
        job_type = self._types[kind]
        deadline = started + self._timeouts[kind]
        job = Claimed.from_row(row, job_type, self.config.max_attempts, deadline)
        ctx, max_attempts = job.ctx, job.ctx.max_attempts
        self._held[ctx.lease_token] = job
        metrics = self.metrics.kind(kind)
        if row["reclaimed"]:
            metrics.reclaimed.inc()
        else:
            metrics.pickup.observe(row["waited_s"])
        if ctx.attempt > max_attempts:
            # Its worker died during the last attempt, or on_exhausted failed: no more runs.
            lost = f"lease expired during the final attempt ({max_attempts})"
            error = lost if row["reclaimed"] else row["last_error"] or lost
            self._acks.add(failed(job, error, permanent=True))
            return
        job.task = asyncio.create_task(self._run(job), name=f"job-{kind}-{ctx.job_id}")

    # --- running ---

    async def _run(self, job: Claimed) -> None:
        started = time.monotonic()
        outcome = await self._execute(job)
        self.metrics.kind(job.ctx.kind).duration.observe(time.monotonic() - started)
        self._acks.add(outcome)

    async def _execute(self, job: Claimed) -> Outcome:
        try:
            finalizer = await job.job_type.run(job.ctx)
        except asyncio.CancelledError:
            if not job.timed_out or job.lost:
                raise  # stopping, or the lease went to another worker: nothing to write
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            return self._failure(job, None)
        except RetryLater as exc:
            return failed(job, exc.error, retry_in_s=exc.delay_s)
        except PermanentFailure as exc:
            return failed(job, exc.error, permanent=True)
        except Exception as exc:
            return self._failure(job, exc)
        return Outcome(job, finalizer=finalizer)

    def _failure(self, job: Claimed, exc: Exception | None) -> Outcome:
        ctx = job.ctx
        if job.timed_out:
            error = f"timed out after {self._timeouts[ctx.kind]:g} s"
        else:
            error = describe(exc) if exc else "failed"
        log.warning(
            "%s job %d attempt %d/%d failed: %s",
            *(ctx.kind, ctx.job_id, ctx.attempt, ctx.max_attempts, error),
            exc_info=exc if not job.timed_out else None,
        )
        return failed(job, error)

    def _written(self, results: list[tuple[Result, Outcome]]) -> None:
        """Called by the ack buffer (under the write lock) once outcomes are committed."""
        deleted = 0
        for result, outcome in results:
            self._held.pop(outcome.job.ctx.lease_token, None)
            deleted += result is Result.COMPLETED or result is Result.EXHAUSTED
        self.metrics.written(results)
        self._maintenance.deleted(deleted)
        self._released()

    def _lost(self, job: Claimed) -> None:
        """The lease is gone (another worker has the job): stop running it, write nothing."""
        if job.task is None or job.task.done():
            return  # its outcome is waiting for the ack buffer, which will refuse it
        log.warning("lost the lease of %s job %d; cancelling it", job.ctx.kind, job.ctx.job_id)
        job.lost = True
        job.task.cancel()
        self._held.pop(job.ctx.lease_token, None)
        self.metrics.kind(job.ctx.kind).stale_acks.inc()
        self._released()

    async def _drain(self) -> None:
        tasks = [job.task for job in self._held.values() if job.task and not job.task.done()]
        if not tasks:
            return
        finished: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
        hurried: asyncio.Future[Any] = asyncio.ensure_future(self._hurried.wait())
        await asyncio.wait(
            {finished, hurried},
            timeout=self.config.drain_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        hurried.cancel()
        for task in tasks:
            task.cancel()  # the late ones: given back to the queue
        await finished
