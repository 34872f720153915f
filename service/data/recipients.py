"""SQL for the platform's known recipient accounts."""

from __future__ import annotations

import asyncpg

from service.data import Connection


async def add_recipient(conn: Connection, *, email: str, name: str) -> asyncpg.Record | None:
    """Add a recipient; None when the email (case-insensitive) is already known."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO recipients (email, name) VALUES ($1, $2)"
        " ON CONFLICT ((lower(email))) DO NOTHING RETURNING id, uuid, email, name",
        email,
        name,
    )
    return row


async def list_recipients(conn: Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch("SELECT id, uuid, email, name, created_at FROM recipients ORDER BY id")
    )


async def find_recipient(conn: Connection, *, email: str) -> int | None:
    """The known recipient account with this email (case-insensitive), if any."""
    recipient_id: int | None = await conn.fetchval(
        "SELECT id FROM recipients WHERE lower(email) = lower($1)", email
    )
    return recipient_id
