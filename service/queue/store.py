"""The job engine's worker-side SQL: claim, leases and acks (adding jobs: ``producer``).

Acks and heartbeats are guarded by the fencing token: ``lease_token`` is unique per claim, so
``id = ANY(ids) AND lease_token = ANY(tokens)`` matches exactly the pairs we hold.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from service.data import Connection

CHANNEL = "vault_jobs"

# Background jobs (emails) are claimed after every other ready job, and not at all by a
# worker busy with other work until they have waited ``BACKGROUND_DEFER_S``: the CPU-bound
# certificates of a batch go first, so the batch completes sooner; its emails follow.
BACKGROUND = -1
ALL_PRIORITIES = -32768  # smallint's least: no job is below it

# Lease tokens are random, not from a sequence: claims commit asynchronously, and after a
# PostgreSQL crash a sequence would hand a lost claim's tokens out again, to the same jobs,
# letting the old holder's acks pass the fence.
# Expired leases first, then background jobs overdue, then ready jobs in claim order; every
# filter lives inside the CTEs. Ready jobs below priority $6 are left alone (a worker busy
# with foreground work passes 0, so background jobs wait) unless they have waited $7 seconds
# (overdue). Both bound their index scans, so waiting jobs are not visited: `priority >= $6`
# ends the ready scan where the background begins, and the overdue scan, an equality on the
# priority, ends at the first job that has not waited long enough.
# Finding expired leases visits every running row, so it is done only when $5 is true (the
# engine asks at most once a second). The UPDATE finds its rows by `id = ANY(ARRAY(...))`, a
# primary-key lookup whatever the planner guesses for the LIMIT (a join could turn into a
# hash join over the whole table).
CLAIM = f"""
WITH expired AS (
    SELECT id FROM jobs
    WHERE $5::boolean AND state = 1 AND locked_until < now() AND kind = ANY($2::text[])
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), overdue AS (
    SELECT id FROM jobs
    WHERE $6 > {BACKGROUND} AND state = 0 AND priority = {BACKGROUND}
        AND run_at <= now() - make_interval(secs => $7) AND kind = ANY($2::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT $1 - (SELECT count(*) FROM expired)
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT id FROM jobs
    WHERE state = 0 AND priority >= $6 AND run_at <= now() AND kind = ANY($2::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT $1 - (SELECT count(*) FROM expired) - (SELECT count(*) FROM overdue)
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j
SET state = 1,
    attempts = j.attempts + 1,
    lease_token = ('x' || left(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint,
    locked_until = now() + make_interval(secs => $3),
    worker_id = $4
WHERE j.id = ANY (ARRAY(
    SELECT id FROM expired UNION ALL SELECT id FROM overdue UNION ALL SELECT id FROM ready
))
RETURNING j.id, j.kind, j.ref_id, j.payload, j.attempts, j.max_attempts, j.lease_token,
    j.last_error, j.priority, extract(epoch FROM now() - j.run_at)::float8 AS waited_s,
    j.id = ANY (ARRAY(SELECT id FROM expired)) AS reclaimed
"""

EXTEND_LEASES = """
UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
WHERE id = ANY($1::bigint[]) AND lease_token = ANY($2::bigint[]) AND state = 1
RETURNING lease_token
"""

DELETE = """
DELETE FROM jobs
WHERE id = ANY($1::bigint[]) AND lease_token = ANY($2::bigint[]) AND state = 1
RETURNING lease_token
"""

# In id order, so two transactions locking overlapping sets cannot deadlock.
LOCK = """
SELECT lease_token FROM jobs
WHERE id = ANY($1::bigint[]) AND lease_token = ANY($2::bigint[]) AND state = 1
ORDER BY id
FOR UPDATE
"""

# attempts: NULL keeps the count; a value overrides it (to mark a job as out of attempts)
REQUEUE = """
UPDATE jobs AS j
SET state = 0, run_at = now() + make_interval(secs => r.delay_s), last_error = r.error,
    attempts = coalesce(r.attempts, j.attempts),
    lease_token = NULL, locked_until = NULL, worker_id = NULL
FROM unnest($1::bigint[], $2::bigint[], $3::float8[], $4::text[], $5::int[])
    AS r (id, token, delay_s, error, attempts)
WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 1
"""

# Graceful shutdown: the interrupted attempt is given back and the job is ready at once.
RELEASE = """
UPDATE jobs
SET state = 0, attempts = greatest(attempts - 1, 0),
    lease_token = NULL, locked_until = NULL, worker_id = NULL
WHERE id = ANY($1::bigint[]) AND lease_token = ANY($2::bigint[]) AND state = 1
"""

# SKIP_LOCKED: if autovacuum (or another engine) is at it already, there is nothing to do.
VACUUM = "VACUUM (SKIP_LOCKED) jobs"

# Each count scans one small partial index rather than the table.
DEPTH = """
SELECT (SELECT count(*) FROM jobs WHERE state = 0) AS ready,
       (SELECT count(*) FROM jobs WHERE state = 1) AS running
"""


async def claim_jobs(
    conn: Connection,
    *,
    kinds: Iterable[str],
    limit: int,
    lease_s: float,
    worker_id: str,
    reclaim: bool,
    timeout_s: float,
    defer_background_s: float | None = None,
) -> list[asyncpg.Record]:
    """Claim up to ``limit`` ready jobs, and expired leases if ``reclaim``. With
    ``defer_background_s``, background jobs only once they have waited that long."""
    if defer_background_s is None:
        min_priority, overdue_s = ALL_PRIORITIES, 0.0
    else:
        min_priority, overdue_s = BACKGROUND + 1, defer_background_s
    args = (limit, list(kinds), lease_s, worker_id, reclaim, min_priority, overdue_s)
    return await conn.fetch(CLAIM, *args, timeout=timeout_s)


async def extend_leases(
    conn: Connection, *, ids: list[int], tokens: list[int], lease_s: float, timeout_s: float
) -> set[int]:
    """Extend the leases still held; return their tokens (the others are stale)."""
    rows = await conn.fetch(EXTEND_LEASES, ids, tokens, lease_s, timeout=timeout_s)
    return {row[0] for row in rows}


async def delete_jobs(
    conn: Connection, *, ids: list[int], tokens: list[int], timeout_s: float
) -> set[int]:
    """Delete the jobs still held; return their tokens."""
    rows = await conn.fetch(DELETE, ids, tokens, timeout=timeout_s)
    return {row[0] for row in rows}


async def lock_jobs(
    conn: Connection, *, ids: list[int], tokens: list[int], timeout_s: float
) -> set[int]:
    """Lock (for this transaction) the jobs still held; return their tokens."""
    rows = await conn.fetch(LOCK, ids, tokens, timeout=timeout_s)
    return {row[0] for row in rows}


async def requeue_jobs(
    conn: Connection,
    *,
    ids: list[int],
    tokens: list[int],
    delays_s: list[float],
    errors: list[str],
    attempts: list[int | None],
    timeout_s: float,
) -> None:
    await conn.execute(REQUEUE, ids, tokens, delays_s, errors, attempts, timeout=timeout_s)


async def release_jobs(
    conn: Connection, *, ids: list[int], tokens: list[int], timeout_s: float
) -> int:
    status = await conn.execute(RELEASE, ids, tokens, timeout=timeout_s)
    return int(status.split()[-1])


async def queue_depth(conn: Connection, *, timeout_s: float) -> tuple[int, int]:
    """(ready, running) job counts."""
    rows = await conn.fetch(DEPTH, timeout=timeout_s)
    return rows[0]["ready"], rows[0]["running"]


async def vacuum_jobs(conn: Connection, *, timeout_s: float) -> None:
    await conn.execute(VACUUM, timeout=timeout_s)
