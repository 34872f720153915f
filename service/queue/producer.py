"""The producer side of the job engine: adding jobs, inside the caller's transaction, with a
notification that wakes the workers (one per statement)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.data import Connection

# One notification per statement (identical notifications are folded within a transaction).
ENQUEUE = """
WITH ins AS (
    INSERT INTO jobs (kind, ref_id, payload, run_at, priority, max_attempts)
    VALUES ($1, $2, $3, coalesce($4, now()), $5, $6)
    RETURNING id
)
SELECT ins.id, pg_notify('vault_jobs', '') FROM ins
"""

ENQUEUE_MANY = """
WITH ins AS (
    INSERT INTO jobs (kind, ref_id, payload, run_at, priority, max_attempts)
    SELECT $1, r.ref_id, r.payload, coalesce($4, now()), $5, $6
    FROM unnest($2::bigint[], $3::jsonb[]) AS r (ref_id, payload)
    RETURNING 1
)
SELECT count(*), pg_notify('vault_jobs', '') FROM ins
"""

NOTIFY = "SELECT pg_notify('vault_jobs', '')"

# Binary COPY is the fastest path for a big batch (~15 % faster than unnest for 10,000 rows),
# but its notification is a second round trip and it cannot carry jsonb through the pool's
# text codec: payload-less batches from this size only.
COPY_FROM = 1000


async def enqueue(
    conn: Connection,
    kind: str,
    *,
    ref_id: int | None = None,
    payload: Any = None,
    run_at: datetime | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
) -> int:
    """Add one job (in the caller's transaction, if any); return its id."""
    job_id: int = await conn.fetchval(
        ENQUEUE, kind, ref_id, payload, run_at, priority, max_attempts
    )
    return job_id


async def enqueue_many(
    conn: Connection,
    kind: str,
    *,
    ref_ids: Sequence[int],
    payloads: Sequence[Any] | None = None,
    run_at: datetime | None = None,
    priority: int = 0,
    max_attempts: int | None = None,
) -> int:
    """Add one job per ref id in one statement plus one notification; return how many."""
    if payloads is not None and len(payloads) != len(ref_ids):
        raise ValueError("payloads and ref_ids must have the same length")
    if not ref_ids:
        return 0
    if payloads is not None or len(ref_ids) < COPY_FROM:
        count: int = await conn.fetchval(
            ENQUEUE_MANY,
            kind,
            list(ref_ids),
            [None] * len(ref_ids) if payloads is None else list(payloads),
            run_at,
            priority,
            max_attempts,
        )
        return count
    columns = ["kind", "ref_id", "priority", "max_attempts"]
    tail: tuple[Any, ...] = (priority, max_attempts)
    if run_at is not None:
        columns.append("run_at")
        tail += (run_at,)
    records = [(kind, ref_id, *tail) for ref_id in ref_ids]
    await conn.copy_records_to_table("jobs", records=records, columns=columns)
    await conn.execute(NOTIFY)
    return len(records)


async def enqueue_select(conn: Connection, kind: str, ref_query: str, *args: Any) -> int:
    """One job per row of ``ref_query`` (a trusted SELECT of ref ids), plus one notification.

    For rows the same transaction just wrote: the ids never travel to the client and back.
    ``$1`` is the kind, so the query's own parameters start at ``$2``.
    """
    count: int = await conn.fetchval(
        f"WITH ins AS (INSERT INTO jobs (kind, ref_id) SELECT $1, r.id FROM ({ref_query}) AS r (id)"
        " RETURNING 1) SELECT count(*), pg_notify('vault_jobs', '') FROM ins",
        kind,
        *args,
    )
    return count


async def enqueue_chunks(
    conn: Connection, kind: str, ref_id: int, id_query: str, per_job: int, *args: Any
) -> int:
    """One job per ``per_job`` rows of ``id_query`` (a trusted SELECT of ids), their
    ids in its payload (``{"ids": [...]}``, consecutive ids), all with ``ref_id``; plus one
    notification.
    ``$1`` is the kind, ``$2`` the ref id, ``$3`` ``per_job``: the query's own start at ``$4``."""
    count: int = await conn.fetchval(
        "WITH numbered AS (SELECT r.id, (row_number() OVER (ORDER BY r.id) - 1) / $3 AS chunk"
        f" FROM ({id_query}) AS r (id)),"
        " ins AS (INSERT INTO jobs (kind, ref_id, payload)"
        " SELECT $1, $2, jsonb_build_object('ids', jsonb_agg(id ORDER BY id)) FROM numbered"
        " GROUP BY chunk ORDER BY chunk RETURNING 1)"
        " SELECT count(*), pg_notify('vault_jobs', '') FROM ins",
        kind,
        ref_id,
        per_job,
        *args,
    )
    return count
