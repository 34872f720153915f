"""SQL for the platform's known recipient accounts."""

from __future__ import annotations

from collections.abc import Sequence

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


async def find_recipients(conn: Connection, *, emails: Sequence[str]) -> list[int | None]:
    """The known recipient account of each email (case-insensitive), or None; in order."""
    rows = await conn.fetch(
        "SELECT r.id FROM unnest($1::text[]) WITH ORDINALITY AS u (email, n)"
        " LEFT JOIN recipients r ON lower(r.email) = lower(u.email) ORDER BY u.n",
        list(emails),
    )
    return [row["id"] for row in rows]
