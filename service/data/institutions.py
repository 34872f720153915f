"""SQL for institutions and their API tokens."""

from __future__ import annotations

from typing import Any

import asyncpg

from service.data import Connection

INSTITUTION_FIELDS = (
    "id",
    "uuid",
    "name",
    "email",
    "phone_number",
    "address",
    "contact_person",
    "website",
    "social_links",
    "latitude",
    "longitude",
    "created_at",
    "updated_at",
)
INSTITUTION_COLUMNS = (
    "i.id, i.uuid, i.name, i.email, i.phone_number, i.address, i.contact_person,"
    " i.website, i.social_links, i.latitude, i.longitude, i.created_at, i.updated_at"
)


async def create_institution(conn: Connection, **fields: Any) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO institutions AS i"
        " (name, email, phone_number, address, contact_person, website)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {INSTITUTION_COLUMNS}",
        fields["name"],
        fields["email"],
        fields.get("phone_number"),
        fields.get("address"),
        fields.get("contact_person"),
        fields.get("website"),
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def list_institutions(conn: Connection) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT {INSTITUTION_COLUMNS} FROM institutions i ORDER BY i.id"))


async def find_institution(conn: Connection, *, key: str) -> asyncpg.Record | None:
    """By numeric id, uuid or exact name."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {INSTITUTION_COLUMNS} FROM institutions i"
        " WHERE i.id::text = $1 OR i.uuid::text = lower($1) OR i.name = $1"
        " ORDER BY i.id LIMIT 1",
        key,
    )
    return row


async def create_token(
    conn: Connection,
    *,
    institution_id: int,
    name: str,
    token_hash: bytes,
    token_prefix: str,
    permissions: list[str],
) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO api_tokens (institution_id, name, token_hash, token_prefix, permissions)"
        " VALUES ($1, $2, $3, $4, $5)"
        " RETURNING id, uuid, name, token_prefix, permissions, created_at",
        institution_id,
        name,
        token_hash,
        token_prefix,
        permissions,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def list_tokens(conn: Connection, *, institution_id: int | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT t.id, t.uuid, t.name, t.token_prefix, t.permissions, t.created_at,"
            " t.last_used_at, t.revoked_at, i.name AS institution_name"
            " FROM api_tokens t JOIN institutions i ON i.id = t.institution_id"
            " WHERE $1::bigint IS NULL OR t.institution_id = $1 ORDER BY t.id",
            institution_id,
        )
    )


async def revoke_token(conn: Connection, *, key: str) -> asyncpg.Record | None:
    """Revoke by uuid or display prefix; returns the token, or None if unknown."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())"
        " WHERE uuid::text = lower($1) OR token_prefix = $1"
        " RETURNING id, uuid, name, token_prefix, revoked_at",
        key,
    )
    return row


async def find_token(conn: Connection, *, token_hash: bytes) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT t.id AS token_id, t.permissions,"
        " (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') AS touch_due,"
        f" {INSTITUTION_COLUMNS}"
        " FROM api_tokens t JOIN institutions i ON i.id = t.institution_id"
        " WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        token_hash,
    )
    return row


async def touch_tokens(conn: Connection, *, token_ids: list[int]) -> None:
    await conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = ANY($1::bigint[])"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        token_ids,
    )
