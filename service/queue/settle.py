"""Settling the outcomes of a flush: their finalizers (or ``on_exhausted``) inside the flush's
transaction, each in a savepoint, or a flush of successes together, ``Grouped`` ones one call
per writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from service.data import Connection
from service.queue.outcomes import Outcome, Result, Settled, describe, failed
from service.queue.types import Grouped, Tallies

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _savepoint(conn: Connection) -> AsyncIterator[None]:
    """Finalizers' savepoint, rolled back whatever failed. asyncpg's nested transaction does
    not roll back when its RELEASE fails (a finalizer that swallowed a database error): the
    flush's transaction would stay aborted, and the flush be retried for ever."""
    await conn.execute("SAVEPOINT settle")
    try:
        yield
        await conn.execute("RELEASE SAVEPOINT settle")
    except BaseException:
        await conn.execute("ROLLBACK TO SAVEPOINT settle")
        raise


async def _exhaust(conn: Connection, outcome: Outcome, error: str, timeout_s: float) -> Settled:
    job = outcome.job
    handler = job.job_type.on_exhausted
    if handler is None:
        return Result.EXHAUSTED, outcome, None
    try:
        async with asyncio.timeout(timeout_s), _savepoint(conn):
            tallies = await handler(conn, job.ctx, error)
    except Exception:
        # Keep the job, out of attempts: its next claim goes straight to on_exhausted.
        log.exception("on_exhausted of %s job %d failed", job.ctx.kind, job.ctx.job_id)
        retried = replace(outcome, retry_in_s=job.backoff_s(), attempts=job.no_attempts_left())
        return Result.RETRIED, retried, None
    return Result.EXHAUSTED, outcome, tallies


async def settle(conn: Connection, outcome: Outcome, timeout_s: float) -> Settled:
    """Run the outcome's finalizer or on_exhausted (each in a savepoint, within
    ``timeout_s``); say what to write for the job."""
    if outcome.error is None:
        if outcome.finalizer is None:
            return Result.COMPLETED, outcome, None
        try:
            async with asyncio.timeout(timeout_s), _savepoint(conn):
                tallies = await outcome.finalizer(conn)
        except Exception as exc:
            ctx = outcome.job.ctx
            log.warning("finalizer of %s job %d failed", ctx.kind, ctx.job_id, exc_info=True)
            outcome = failed(outcome.job, f"finalizer: {describe(exc)}")
        else:
            return Result.COMPLETED, outcome, tallies
    if outcome.retry_in_s is not None:
        return Result.RETRIED, outcome, None
    return await _exhaust(conn, outcome, outcome.error or "failed", timeout_s)


async def finalize_together(
    conn: Connection, outcomes: list[Outcome], timeout_s: float
) -> list[Settled] | None:
    """The common case, a flush of succeeded jobs: their finalizers in one savepoint rather
    than one each (two round trips per job fewer), ``Grouped`` ones one call per group (jobs
    with nothing to finalize beside them). None if any failed: the savepoint is rolled back,
    and each outcome is settled in a savepoint of its own, so the others still land."""
    if len(outcomes) < 2 or any(o.error is not None for o in outcomes):
        return None
    settled: list[Settled] = []
    try:
        async with _savepoint(conn):
            for group in _groups(outcomes):
                async with asyncio.timeout(timeout_s):
                    written = await _run_group(conn, group)
                settled += [
                    (Result.COMPLETED, outcome, tallies)
                    for outcome, tallies in zip(group, written, strict=True)
                ]
    except Exception:
        log.info("a finalizer of a flush of %d failed; settling each alone", len(outcomes))
        return None
    return settled


def _groups(outcomes: list[Outcome]) -> list[list[Outcome]]:
    """Outcomes whose ``Grouped`` finalizers share a writer, together, and those without a
    finalizer; the rest alone. Groups keep the order of their first outcome, and outcomes their
    order within a group."""
    groups: dict[tuple[str, object], list[Outcome]] = {}
    for outcome in outcomes:
        finalizer = outcome.finalizer
        if finalizer is None:
            key: tuple[str, object] = ("none", None)
        elif isinstance(finalizer, Grouped):
            key = ("group", finalizer.write)
        else:
            key = ("one", id(outcome))
        groups.setdefault(key, []).append(outcome)
    return list(groups.values())


async def _run_group(conn: Connection, group: list[Outcome]) -> Sequence[Tallies]:
    finalizers = [outcome.finalizer for outcome in group]
    first = finalizers[0]
    if first is None:
        return [None] * len(group)
    if isinstance(first, Grouped):
        items = [f.item for f in finalizers if isinstance(f, Grouped)]
        return await first.write(conn, items)
    return [await first(conn)]
