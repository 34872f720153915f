"""What became of a claimed job: its outcome (a finalizer to run, or an error and whether to
retry) and what writing it did (completed, retried, exhausted, or refused as stale)."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import asyncpg

from service.queue.types import (
    Finalizer,
    JobContext,
    JobError,
    JobType,
    Tallies,
    exponential_backoff,
)

MAX_ERROR_CHARS = 2000


@dataclass(slots=True, eq=False)
class Claimed:
    """A job this process holds: running, or finished and waiting for its ack."""

    ctx: JobContext
    job_type: JobType
    deadline: float = 0.0  # time.monotonic() past which the job is cancelled
    task: asyncio.Task[None] | None = None
    timed_out: bool = False
    lost: bool = False  # the lease went to another worker
    background: bool = False  # below the foreground's priority (store.BACKGROUND)

    @classmethod
    def from_row(
        cls, row: asyncpg.Record, job_type: JobType, max_attempts: int, deadline: float
    ) -> Claimed:
        """A claimed row; ``max_attempts`` unless the job or its type sets its own."""
        ctx = JobContext(
            job_id=row["id"],
            kind=row["kind"],
            ref_id=row["ref_id"],
            payload=row["payload"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"] or job_type.max_attempts or max_attempts,
            lease_token=row["lease_token"],
        )
        return cls(ctx, job_type, deadline=deadline, background=row["priority"] < 0)

    def backoff_s(self) -> float:
        """The pause before its next attempt, after this one failed."""
        return (self.job_type.backoff or exponential_backoff)(self.ctx.attempt)

    def no_attempts_left(self) -> int:
        """An attempt count that leaves it out of attempts, to requeue an exhausted job with:
        its next claim goes straight to ``on_exhausted``."""
        return max(self.ctx.attempt, self.ctx.max_attempts)


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Claimed
    finalizer: Finalizer | None = None
    error: str | None = None  # None: succeeded
    retry_in_s: float | None = None  # with an error: None means no attempt left
    attempts: int | None = None  # requeue with this attempt count


class Result(enum.Enum):
    # values name the per-kind counters in metrics.KindMetrics
    COMPLETED = "completed"
    RETRIED = "retried"
    EXHAUSTED = "exhausted"
    STALE = "stale_acks"


def describe(exc: BaseException) -> str:
    if isinstance(exc, JobError) and str(exc):
        return str(exc)[:MAX_ERROR_CHARS]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


def failed(
    job: Claimed, error: str, *, retry_in_s: float | None = None, permanent: bool = False
) -> Outcome:
    """A failed attempt: another one after a backoff, or none if permanent or out of attempts."""
    ctx = job.ctx
    error = error[:MAX_ERROR_CHARS]
    if permanent or ctx.attempt >= ctx.max_attempts:
        return Outcome(job, error=error)
    if retry_in_s is None:
        retry_in_s = job.backoff_s()
    return Outcome(job, error=error, retry_in_s=retry_in_s)


Settled = tuple[Result, Outcome, Tallies]
