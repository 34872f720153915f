"""The webhook jobs: one signed delivery attempt per run, and a batch's ``created`` fan-out.

No transaction is open during the HTTP call: the delivery is read, the POST is made, then the
attempt is recorded in a short transaction of its own. Retries follow the webhook schedule
(``WEBHOOK_RETRY_SCHEDULE_S``), not the engine's default backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import asyncpg

from service.config import Settings
from service.data import Connection
from service.data import webhook_deliveries as delivery_data
from service.queue.types import Finalizer, JobContext, JobType, RetryLater
from service.webhooks import events, sender, signing

if TYPE_CHECKING:
    from service.jobs import Deps

log = logging.getLogger(__name__)

READ_CAP_BYTES = 1024
EXCERPT_CHARS = 200


def retry_schedule(settings: Settings) -> Sequence[int]:
    return settings.webhook_retry_schedule_s or sender.DEFAULT_RETRY_SCHEDULE_S


def health(settings: Settings) -> delivery_data.Health:
    # a little past the retry schedule's longest pause (jitter, a busy queue), an hour at least
    gap = max(3600.0, max(retry_schedule(settings)) * 1.5)
    return delivery_data.Health(disable_after_s=settings.webhook_disable_after_s, streak_gap_s=gap)


def timeouts(settings: Settings) -> tuple[float, float]:
    """(job, HTTP) timeouts: the POST and the bookkeeping around it fit inside the job's lease."""
    job = min(settings.webhook_timeout_s + 5.0, settings.job_lease_s * 0.8)
    return job, min(settings.webhook_timeout_s, job * 0.75)


def job_types(deps: Deps) -> list[JobType]:
    schedule = retry_schedule(deps.settings)
    job_timeout, _ = timeouts(deps.settings)
    return [
        JobType(
            events.DELIVER,
            partial(deliver, deps),
            on_exhausted=delivery_exhausted,
            max_attempts=len(schedule) + 1,
            timeout_s=job_timeout,
            backoff=partial(_backoff, schedule),
        ),
        JobType(events.FAN_OUT, partial(fan_out, deps)),
    ]


async def deliver(deps: Deps, ctx: JobContext) -> Finalizer | None:
    assert ctx.ref_id is not None  # delivery jobs always name their delivery
    async with deps.pool.acquire() as conn:
        target = await _load(conn, ctx.ref_id)
    if target is None:
        return None  # deleted with its endpoint, delivered, or the endpoint is disabled
    result = await attempt(deps, target)
    record = outcome(ctx, result, retry_schedule(deps.settings))
    async with deps.pool.acquire() as conn:
        await delivery_data.record_attempt(conn, record, health=health(deps.settings))
    if record.delivery_status == "pending":
        assert record.retry_in_s is not None  # pending means another attempt is planned
        raise RetryLater(record.retry_in_s, result.error or "failed")
    if not result.ok:
        log.info("webhook delivery %s failed for good: %s", target["uuid"], result.error)
    return None


async def _load(conn: Connection, delivery_id: int) -> asyncpg.Record | None:
    """The delivery with its endpoint, if there is an attempt to make."""
    target = await delivery_data.load_delivery(conn, delivery_id=delivery_id)
    if target is None or target["status"] != "pending":
        return None
    if not target["active"]:
        await delivery_data.finish_delivery(conn, delivery_id=delivery_id, status="cancelled")
        return None
    return target


async def attempt(deps: Deps, target: asyncpg.Record) -> sender.DeliveryResult:
    """One POST, signed now (a fresh timestamp per attempt, the same delivery id on all)."""
    payload = events.body(
        event=target["event"],
        delivery_uuid=target["uuid"],
        created_at=target["created_at"],
        data=target["data"],
    )
    headers = signing.sign_headers(
        secret=target["secret"],
        body=payload,
        event=target["event"],
        delivery_id=str(target["uuid"]),
        timestamp=datetime.now(UTC),
    )
    _, http_timeout = timeouts(deps.settings)
    return await sender.deliver(
        deps.http,
        url=target["url"],
        body=payload,
        headers=headers,
        timeout_s=http_timeout,
        max_response_bytes=READ_CAP_BYTES,
    )


def outcome(
    ctx: JobContext, result: sender.DeliveryResult, schedule: Sequence[int]
) -> delivery_data.Attempt:
    """What the attempt means: delivered, another attempt later, or failed for good (410 too)."""
    assert ctx.ref_id is not None
    delay: float | None = None
    if result.ok:
        status = "delivered"
    elif result.gone:
        status = "failed"
    else:
        delay = sender.with_retry_after(
            sender.next_retry_delay_s(ctx.attempt, schedule=schedule), result.retry_after_s
        )
        status = "failed" if delay is None else "pending"
    return delivery_data.Attempt(
        delivery_id=ctx.ref_id,
        attempt=ctx.attempt,
        status_code=result.status,
        duration_ms=result.duration_ms,
        error=result.error[:2000] if result.error else None,
        # PostgreSQL text cannot hold NUL; the excerpt is for reading, not for byte accuracy
        excerpt=result.response_excerpt[:EXCERPT_CHARS].replace("\x00", "\ufffd"),
        delivery_status=status,
        retry_in_s=delay,
        gone=result.gone,
    )


async def delivery_exhausted(conn: Connection, ctx: JobContext, error: str) -> None:
    """The job ran out of attempts some other way (timeouts, crashes): the delivery failed."""
    assert ctx.ref_id is not None
    await delivery_data.finish_delivery(conn, delivery_id=ctx.ref_id, status="failed")


async def fan_out(deps: Deps, ctx: JobContext) -> Finalizer | None:
    assert ctx.ref_id is not None  # fan-out jobs always name their batch
    await events.fan_out_batch(deps.pool, batch_id=ctx.ref_id)
    return None


def _backoff(schedule: Sequence[int], attempt: int) -> float:
    """For attempts that ended without an outcome of their own (a timeout, a database error)."""
    delay = sender.next_retry_delay_s(attempt, schedule=schedule)
    return delay if delay is not None else float(schedule[-1])
