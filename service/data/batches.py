"""SQL for bulk batches: creation, counters, reads."""

from __future__ import annotations

import uuid

import asyncpg

from service.data import Connection

BATCH_COLUMNS = (
    "b.id, b.uuid, b.institution_id, b.status, b.total_certificates,"
    " b.processed_certificates, b.failed_certificates, b.completion_date,"
    " b.created_at, b.updated_at"
)


async def insert_batch(conn: Connection, *, institution_id: int, total: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO batches AS b (institution_id, total_certificates) VALUES ($1, $2)"
        f" RETURNING {BATCH_COLUMNS}",
        institution_id,
        total,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def find_batch(
    conn: Connection, *, institution_id: int, batch_uuid: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {BATCH_COLUMNS} FROM batches b WHERE b.uuid = $1 AND b.institution_id = $2",
        batch_uuid,
        institution_id,
    )
    return row


async def list_batches(
    conn: Connection, *, institution_id: int, status: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        f"SELECT {BATCH_COLUMNS} FROM batches b"
        " WHERE b.institution_id = $1 AND ($2::text IS NULL OR b.status = $2)"
        " ORDER BY b.id DESC LIMIT $3 OFFSET $4",
        institution_id,
        status,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM batches b"
        " WHERE b.institution_id = $1 AND ($2::text IS NULL OR b.status = $2)",
        institution_id,
        status,
    )
    return list(rows), total


async def count_outcome(
    conn: Connection, *, batch_id: int, generated: int = 0, failed: int = 0
) -> tuple[asyncpg.Record, bool]:
    """Move a batch's counters by the deltas; also say whether this change finished the batch.

    The new counts are written as ``column + delta`` everywhere (not read first), so concurrent
    updates of one batch serialise on its row and each sees the other's result.
    """
    row = await conn.fetchrow(
        """
        UPDATE batches AS b SET
            processed_certificates = b.processed_certificates + $2,
            failed_certificates = b.failed_certificates + $3,
            status = CASE
                WHEN b.processed_certificates + $2 + b.failed_certificates + $3
                     < b.total_certificates THEN 'processing'
                WHEN b.failed_certificates + $3 = 0 THEN 'completed'
                WHEN b.processed_certificates + $2 = 0 THEN 'failed'
                ELSE 'partially_completed' END,
            completion_date = CASE
                WHEN b.processed_certificates + $2 + b.failed_certificates + $3
                     = b.total_certificates THEN now() END,
            updated_at = now()
        WHERE b.id = $1
        RETURNING """
        + BATCH_COLUMNS,
        batch_id,
        generated,
        failed,
    )
    assert row is not None  # the certificate's batch exists (foreign key)
    done = row["processed_certificates"] + row["failed_certificates"]
    finished_now = done == row["total_certificates"] and generated + failed > 0
    return row, finished_now
