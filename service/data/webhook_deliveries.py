"""SQL for the webhook delivery job: load a delivery, record an attempt, keep the endpoint's
health (failing since when, disabled on 410 or after failing too long)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from service.data import Connection
from service.data.webhooks import iso


async def load_delivery(conn: Connection, *, delivery_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT d.id, d.uuid, d.event, d.data, d.status, d.created_at, d.endpoint_id,"
        " e.url, e.secret, e.active"
        " FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.id = $1",
        delivery_id,
    )
    return row


async def finish_delivery(conn: Connection, *, delivery_id: int, status: str) -> None:
    """A pending delivery that will not be attempted again: ``failed`` or ``cancelled``."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = $2, next_attempt_at = NULL, finished_at = now()"
        " WHERE id = $1 AND status = 'pending'",
        *(delivery_id, status),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    delivery_id: int
    attempt: int
    status_code: int | None
    duration_ms: int
    error: str | None
    excerpt: str
    # 'delivered', 'pending' (another attempt in retry_in_s), 'failed' (no more attempts)
    delivery_status: str
    retry_in_s: float | None
    gone: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """When a failing endpoint is disabled."""

    disable_after_s: float  # failing without a success for this long
    # a first attempt failing this long after the previous failure starts a new streak: nothing
    # was being retried in between, so the quiet time was no failure (a retry, however long
    # its Retry-After, always continues the streak)
    streak_gap_s: float


async def record_attempt(conn: Connection, attempt: Attempt, *, health: Health) -> None:
    """Log the attempt, move the delivery on, and keep the endpoint's health (all or nothing)."""
    async with conn.transaction():
        endpoint_id = await conn.fetchval(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1,"
            " next_attempt_at = now() + make_interval(secs => $3),"
            " finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END"
            " WHERE id = $1 AND status = 'pending' RETURNING endpoint_id",
            *(attempt.delivery_id, attempt.delivery_status, attempt.retry_in_s),
        )
        if endpoint_id is None:
            return  # deleted with its endpoint, or finished by an earlier run of the job
        await conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, status_code,"
            " duration_ms, error, response_excerpt, next_retry_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))",
            *(attempt.delivery_id, endpoint_id, attempt.attempt, attempt.status_code),
            *(attempt.duration_ms, attempt.error, attempt.excerpt, attempt.retry_in_s),
        )
        if attempt.delivery_status == "delivered":
            await _endpoint_succeeded(conn, endpoint_id)
        else:
            await _endpoint_failed(conn, endpoint_id, attempt, health)


async def _endpoint_succeeded(conn: Connection, endpoint_id: int) -> None:
    await conn.execute(
        "UPDATE webhook_endpoints SET last_success_at = now(), failing_since = NULL,"
        " updated_at = now() WHERE id = $1",
        endpoint_id,
    )


GONE_REASON = "410 Gone: the endpoint answered 410, so deliveries to it stopped."


async def _endpoint_failed(
    conn: Connection, endpoint_id: int, attempt: Attempt, health: Health
) -> None:
    """Disable the endpoint on 410, or when it has failed without a success for too long."""
    reason: str | None = await conn.fetchval(
        "WITH streak AS (SELECT id, active, CASE WHEN failing_since IS NULL OR ($7::int = 1"
        " AND last_failure_at < now() - make_interval(secs => $6::float8)) THEN now()"
        " ELSE failing_since END AS since FROM webhook_endpoints WHERE id = $1 FOR UPDATE),"
        " cur AS (SELECT id, since, CASE WHEN NOT active THEN NULL WHEN $2::boolean THEN $3::text"
        " WHEN since < now() - make_interval(secs => $4::float8) THEN format("
        f"'Every delivery attempt failed since %s (last error: %s).', {iso('since')},"
        " $5::text) END AS reason FROM streak)"
        " UPDATE webhook_endpoints e SET last_failure_at = now(), failing_since = cur.since,"
        " active = e.active AND cur.reason IS NULL,"
        " disabled_reason = coalesce(cur.reason, e.disabled_reason),"
        " disabled_at = CASE WHEN cur.reason IS NULL THEN e.disabled_at ELSE now() END,"
        " updated_at = now() FROM cur WHERE e.id = cur.id RETURNING cur.reason",
        *(endpoint_id, attempt.gone, GONE_REASON, health.disable_after_s),
        *(attempt.error or "failed", health.streak_gap_s, attempt.attempt),
    )
    if reason is not None:
        # its other deliveries will not be attempted: say so now, not when their jobs run
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'cancelled', next_attempt_at = NULL,"
            " finished_at = now() WHERE endpoint_id = $1 AND status = 'pending'",
            endpoint_id,
        )
