"""SQL for idempotency keys."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from service.data import Connection

KEY_TTL = "24 hours"
# An in-flight key whose request died (process killed before it committed) is taken over.
ABANDONED_AFTER = "60 seconds"


async def insert_or_get(
    conn: Connection, *, institution_id: int, key: str, request_hash: bytes
) -> asyncpg.Record:
    """Insert the key as in-flight, taking over an expired or abandoned one; else read it."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO idempotency_keys AS k (institution_id, key, request_hash)
        VALUES ($1, $2, $3)
        ON CONFLICT (institution_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, state = 'in_flight',
                response_status = NULL, response_body = NULL, claim_token = gen_random_uuid(),
                locked_at = now(), created_at = now()
            WHERE k.created_at < now() - interval '{KEY_TTL}'
               OR (k.state = 'in_flight' AND k.locked_at < now() - interval '{ABANDONED_AFTER}'
                   AND k.request_hash = EXCLUDED.request_hash)
        RETURNING true AS inserted, request_hash, state, response_status, response_body,
            claim_token
        """,
        institution_id,
        key,
        request_hash,
    )
    if row is not None:
        return row
    existing = await conn.fetchrow(
        "SELECT false AS inserted, request_hash, state, response_status, response_body,"
        " claim_token FROM idempotency_keys WHERE institution_id = $1 AND key = $2",
        institution_id,
        key,
    )
    if existing is None:  # deleted between the two statements: the caller may simply retry
        return await insert_or_get(
            conn, institution_id=institution_id, key=key, request_hash=request_hash
        )
    return existing


async def complete(
    conn: Connection,
    *,
    institution_id: int,
    key: str,
    claim_token: uuid.UUID,
    status: int,
    body: dict[str, Any],
) -> bool:
    """Record the response; False when the claim was taken over meanwhile (then the caller's
    transaction must not commit its effects)."""
    result: str = await conn.execute(
        "UPDATE idempotency_keys SET state = 'done', response_status = $4, response_body = $5"
        " WHERE institution_id = $1 AND key = $2 AND claim_token = $3 AND state = 'in_flight'",
        institution_id,
        key,
        claim_token,
        status,
        body,
    )
    return result.endswith(" 1")


async def delete(
    conn: Connection, *, institution_id: int, key: str, claim_token: uuid.UUID
) -> None:
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE institution_id = $1 AND key = $2"
        " AND claim_token = $3 AND state = 'in_flight'",
        institution_id,
        key,
        claim_token,
    )


async def purge_expired(conn: Connection) -> int:
    result: str = await conn.execute(
        f"DELETE FROM idempotency_keys WHERE created_at < now() - interval '{KEY_TTL}'"
    )
    return int(result.split()[-1])
