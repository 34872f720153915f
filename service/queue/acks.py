"""The ack buffer: job outcomes written in batches, guarded by the fencing token.

Finalizers and ``on_exhausted`` run inside the flush transaction, each in a savepoint, and only
for jobs whose row still carries the token of this claim: a stale worker writes nothing. The
tallies they return are summed and written last, once per shared row (see ``Tally``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import asyncpg

from service.data import Connection
from service.queue import store
from service.queue.outcomes import MAX_ERROR_CHARS, Outcome, Result
from service.queue.settle import finalize_together, settle
from service.queue.tallies import TallyFailed, write_tallies
from service.queue.types import EngineConfig, retry_pause

log = logging.getLogger(__name__)


def _lock_order(outcome: Outcome) -> tuple[str, int, int]:
    """Finalizers lock domain rows (their certificate, say); running them in one order in
    every process keeps two flushes from waiting on each other's rows in opposite orders."""
    ctx = outcome.job.ctx
    return ctx.kind, ctx.ref_id or 0, ctx.job_id


def _keys(outcomes: Sequence[Outcome]) -> tuple[list[int], list[int]]:
    return [o.job.ctx.job_id for o in outcomes], [o.job.ctx.lease_token for o in outcomes]


async def _write_settled(
    conn: Connection, settled: list[tuple[Result, Outcome]], timeout_s: float
) -> None:
    finished = [o for r, o in settled if r is not Result.RETRIED]
    retried = [o for r, o in settled if r is Result.RETRIED]
    if finished:
        ids, tokens = _keys(finished)
        await store.delete_jobs(conn, ids=ids, tokens=tokens, timeout_s=timeout_s)
    if retried:
        ids, tokens = _keys(retried)
        await store.requeue_jobs(
            conn,
            ids=ids,
            tokens=tokens,
            delays_s=[o.retry_in_s or 0.0 for o in retried],
            errors=[o.error or "" for o in retried],
            attempts=[o.attempts for o in retried],
            timeout_s=timeout_s,
        )


async def write_outcomes(
    conn: Connection, outcomes: Sequence[Outcome], *, timeout_s: float
) -> list[tuple[Result, Outcome]]:
    """Write a batch of outcomes; each comes back with what became of it."""
    ids, tokens = _keys(outcomes)
    if all(o.error is None and o.finalizer is None for o in outcomes):
        held = await store.delete_jobs(conn, ids=ids, tokens=tokens, timeout_s=timeout_s)
        return [
            (Result.COMPLETED if t in held else Result.STALE, o)
            for t, o in zip(tokens, outcomes, strict=True)
        ]
    while True:
        try:
            return await _write_guarded(conn, outcomes, timeout_s)
        except TallyFailed as failure:
            # Only the jobs behind that row retry (their effects were rolled back with the
            # flush); the others are written again without them. Requeued jobs add no tally,
            # so this ends.
            log.warning("%s; %d jobs will retry", failure, len(failure.job_ids))
            outcomes = [
                _requeued(o, str(failure)) if o.job.ctx.job_id in failure.job_ids else o
                for o in outcomes
            ]


def _requeued(outcome: Outcome, error: str) -> Outcome:
    job = outcome.job
    # an exhausted job stays out of attempts, and keeps its own error: on_exhausted records it
    # (a certificate's reason)
    attempts = None if outcome.error is None else job.no_attempts_left()
    error = outcome.error or error
    return Outcome(
        job, error=error[:MAX_ERROR_CHARS], retry_in_s=job.backoff_s(), attempts=attempts
    )


async def _write_guarded(
    conn: Connection, outcomes: Sequence[Outcome], timeout_s: float
) -> list[tuple[Result, Outcome]]:
    ids, tokens = _keys(outcomes)
    async with conn.transaction():
        held = await store.lock_jobs(conn, ids=ids, tokens=tokens, timeout_s=timeout_s)
        ordered = sorted(outcomes, key=_lock_order)
        live = [o for o in ordered if o.job.ctx.lease_token in held]
        settled = await finalize_together(conn, live, timeout_s)
        if settled is None:
            settled = [await settle(conn, outcome, timeout_s) for outcome in live]
        results = [(Result.STALE, o) for o in ordered if o.job.ctx.lease_token not in held]
        results += [(result, outcome) for result, outcome, _ in settled]
        tallies = [
            (outcome.job.ctx.job_id, tally)
            for _, outcome, added in settled
            for tally in added or ()
        ]
        await write_tallies(conn, tallies, timeout_s)
        await _write_settled(conn, [r for r in results if r[0] is not Result.STALE], timeout_s)
    return results


Written = Callable[[list[tuple[Result, Outcome]]], None]


class AckBuffer:
    """Collects outcomes and flushes them every ``interval_s``, at ``batch`` of them, or at
    once when ``urgent()`` says the engine is waiting for the capacity they hold."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: EngineConfig,
        *,
        write_lock: asyncio.Lock,
        on_written: Written,
        urgent: Callable[[], bool],
    ) -> None:
        self._pool = pool
        self._interval_s = config.ack_interval_s
        self._batch = config.ack_batch
        self._timeout = config.statement_timeout_s
        self._acquire_timeout = config.acquire_timeout_s
        self._lock = write_lock
        self._on_written = on_written
        self._urgent = urgent
        self._pending: list[Outcome] = []
        self._arrived = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-acks")

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        if len(self._pending) in (1, self._batch) or self._urgent():
            self._arrived.set()

    async def close(self, timeout_s: float) -> None:
        """Flush what is pending (retrying for up to ``timeout_s``), then stop."""
        self._closing = True
        self._arrived.set()
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        if not self._task.done():
            log.error("gave up flushing %d job outcomes at shutdown", len(self._pending))
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        failures = 0
        while self._pending or not self._closing:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(self._pending) < self._batch and not (self._closing or self._urgent()):
                await self._linger()
            try:
                await self._flush(self._pending[: self._batch])
            except Exception as exc:
                failures += 1
                log.warning("writing %d job outcomes failed: %s", len(self._pending), exc)
                await asyncio.sleep(retry_pause(failures))
            else:
                failures = 0

    async def _linger(self) -> None:
        """Wait for more outcomes to share the transaction, until the batch is full."""
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._interval_s):
                await self._arrived.wait()

    async def _flush(self, batch: list[Outcome]) -> None:
        async with self._lock, self._pool.acquire(timeout=self._acquire_timeout) as conn:
            results = await write_outcomes(conn, batch, timeout_s=self._timeout)
            # only this task removes items, and new ones are appended behind the batch
            del self._pending[: len(batch)]
            self._on_written(results)
