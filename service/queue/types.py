"""What the application hands the job engine: job types, their context, outcomes and settings."""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeAlias, TypeVar

from service.config import Settings
from service.data import Connection

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 600.0
BACKOFF_JITTER = 0.2

# (conn, ref id, summed counts): writes a tally's sum into its row.
TallyWriter: TypeAlias = Callable[[Connection, int, tuple[int, ...]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts a finalizer adds to a row that many jobs share (a batch's counters, say).

    The flush sums the tallies of its jobs per (kind, ref id) and writes each sum once, after
    every finalizer and in (kind, ref id) order: one write per shared row per flush, and rows
    locked in one order by every process, so two flushes cannot deadlock on them.
    """

    kind: str
    ref_id: int
    counts: tuple[int, ...]
    write: TallyWriter


Tallies: TypeAlias = Sequence[Tally] | None
# Runs inside the guarded transaction that deletes the job: the job's effects are written once.
Finalizer: TypeAlias = Callable[[Connection], Awaitable[Tallies]]

Item = TypeVar("Item")
# (conn, items of many jobs): writes them all; a Tallies per item, in order.
GroupWriter: TypeAlias = Callable[[Connection, Sequence[Item]], Awaitable[Sequence[Tallies]]]


@dataclass(frozen=True, slots=True)
class Grouped(Generic[Item]):
    """A finalizer that a flush runs together with the others of an equal ``write``: one call,
    set-based statements for many jobs, instead of a few statements each. Called on its own
    (a flush of one, or the fallback when a group failed), it is a group of one."""

    write: GroupWriter[Item]
    item: Item

    async def __call__(self, conn: Connection) -> Tallies:
        (tallies,) = await self.write(conn, [self.item])
        return tallies


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    job_id: int
    kind: str
    ref_id: int | None
    payload: Any
    attempt: int  # 1-based
    max_attempts: int
    lease_token: int


Handler: TypeAlias = Callable[[JobContext], Awaitable[Finalizer | None]]
# (conn, ctx, last error): runs inside the guarded transaction that deletes an exhausted job.
ExhaustedHandler: TypeAlias = Callable[[Connection, JobContext, str], Awaitable[Tallies]]


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    run: Handler
    on_exhausted: ExhaustedHandler | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    # attempt number (1-based) of the failed attempt -> seconds until the next one
    backoff: Callable[[int], float] | None = None


class JobError(Exception):
    """A failure worth another attempt, whose message is written for people: it is recorded
    (and shown to API clients as a certificate's error) as is, without the exception's name."""


class RetryLater(Exception):
    """Run the job again after ``delay_s`` (no jitter). It still uses up the attempt."""

    def __init__(self, delay_s: float, error: str) -> None:
        super().__init__(error)
        self.delay_s = max(0.0, delay_s)
        self.error = error


class PermanentFailure(Exception):
    """The job cannot succeed: no more attempts, ``on_exhausted`` runs at once."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def exponential_backoff(attempt: int) -> float:
    """2 s, 4 s, 8 s, ... capped at 10 min, each ±20 %."""
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(attempt - 1, 30))
    return delay * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    workers: int = 8  # jobs in flight in this process (running or awaiting their ack)
    lease_s: float = 60.0
    timeout_s: float = 45.0
    max_attempts: int = 5
    poll_interval_s: float = 1.0
    drain_timeout_s: float = 20.0
    claim_batch: int = 100
    ack_interval_s: float = 0.02
    ack_batch: int = 500
    statement_timeout_s: float = 10.0
    acquire_timeout_s: float = 10.0
    depth_interval_s: float = 15.0
    vacuum_after_jobs: int = 25_000  # 0: leave it to autovacuum
    vacuum_min_interval_s: float = 5.0
    background_defer_s: float = 60.0  # 0: background jobs do not wait for the foreground
    listen: bool = True  # False: poll only (e.g. behind PgBouncer in transaction mode)
    worker_id: str = field(default_factory=default_worker_id)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EngineConfig:
        config = cls(
            workers=settings.workers,
            lease_s=settings.job_lease_s,
            timeout_s=settings.job_timeout_s,
            max_attempts=settings.job_max_attempts,
            poll_interval_s=settings.poll_interval_s,
            drain_timeout_s=settings.drain_timeout_s,
            background_defer_s=settings.background_defer_s,
        )
        return replace(config, **overrides)

    @property
    def heartbeat_s(self) -> float:
        return self.lease_s / 3

    def check(self, job_types: list[JobType]) -> None:
        if self.workers < 1:
            raise ValueError("the engine needs at least one worker slot")
        if self.claim_batch < 1 or self.ack_batch < 1 or self.max_attempts < 1:
            raise ValueError("claim_batch, ack_batch and max_attempts must be at least 1")
        for job_type in job_types:
            timeout = job_type.timeout_s or self.timeout_s
            if timeout >= self.lease_s:
                raise ValueError(f"job type {job_type.name!r}: timeout must be shorter than lease")
        if len({t.name for t in job_types}) != len(job_types):
            raise ValueError("job type names must be unique")


def retry_pause(failures: int) -> float:
    """How long a loop waits after ``failures`` consecutive database errors: 0.2 s up to 10 s."""
    return min(10.0, 0.1 * 2.0 ** min(failures, 10)) * random.uniform(0.8, 1.2)
