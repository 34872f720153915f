"""SQL for temporary uploads (file_ids)."""

from __future__ import annotations

import uuid

import asyncpg

from service.data import Connection

UPLOAD_COLUMNS = "id, uuid, institution_id, storage_key, file_name, mime_type, size, sha256"


async def lock_institution_usage(conn: Connection, *, institution_id: int) -> int:
    """Lock the institution row (serialises concurrent quota checks) and sum pending bytes."""
    await conn.execute("SELECT 1 FROM institutions WHERE id = $1 FOR NO KEY UPDATE", institution_id)
    used: int = await conn.fetchval(
        "SELECT coalesce(sum(size), 0) FROM uploads"
        " WHERE institution_id = $1 AND expires_at > now()",
        institution_id,
    )
    return used


async def insert_upload(
    conn: Connection,
    *,
    institution_id: int,
    storage_key: str,
    file_name: str,
    mime_type: str,
    size: int,
    sha256: str,
    ttl_s: int,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO uploads (institution_id, storage_key, file_name, mime_type, size, sha256,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))"
        f" RETURNING {UPLOAD_COLUMNS}, created_at, expires_at",
        institution_id,
        storage_key,
        file_name,
        mime_type,
        size,
        sha256,
        float(ttl_s),
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def take_uploads(
    conn: Connection, *, institution_id: int, file_ids: list[uuid.UUID]
) -> list[asyncpg.Record]:
    """Consume the institution's unexpired uploads among ``file_ids``: their rows are deleted
    (the caller's transaction creates the certificates that take the files over)."""
    return list(
        await conn.fetch(
            f"DELETE FROM uploads WHERE uuid = ANY($1::uuid[]) AND institution_id = $2"
            f" AND expires_at > now() RETURNING {UPLOAD_COLUMNS}",
            file_ids,
            institution_id,
        )
    )


async def claim_expired(conn: Connection, *, limit: int) -> list[asyncpg.Record]:
    """Expired uploads, locked so that other sweepers skip them."""
    return list(
        await conn.fetch(
            "SELECT id, storage_key FROM uploads WHERE expires_at <= now()"
            " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    )


async def delete_uploads(conn: Connection, *, ids: list[int]) -> None:
    await conn.execute("DELETE FROM uploads WHERE id = ANY($1::bigint[])", ids)


async def expire_upload(conn: Connection, *, institution_id: int, upload_id: uuid.UUID) -> None:
    """Expire it now: out of the quota at once, and swept with its file by housekeeping."""
    await conn.execute(
        "UPDATE uploads SET expires_at = now() WHERE uuid = $1 AND institution_id = $2",
        upload_id,
        institution_id,
    )
