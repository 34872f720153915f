"""SQL for the recipient email outbox."""

from __future__ import annotations

import asyncpg

from service.data import Connection


async def add_to_outbox(conn: Connection, *, certificate_id: int, message_id: str) -> int | None:
    """The certificate's one outbox row; None when it already has one."""
    outbox_id: int | None = await conn.fetchval(
        "INSERT INTO email_outbox (certificate_id, message_id) VALUES ($1, $2)"
        " ON CONFLICT (certificate_id) DO NOTHING RETURNING id",
        certificate_id,
        message_id,
    )
    return outbox_id


async def load_email(conn: Connection, *, outbox_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT o.id, o.status, c.status AS certificate_status, o.message_id, c.uuid,"
        " c.reference_id, c.full_name,"
        " c.applicant_email, c.certificate_title, i.name AS institution_name"
        " FROM email_outbox o JOIN certificates c ON c.id = o.certificate_id"
        " JOIN institutions i ON i.id = c.institution_id WHERE o.id = $1",
        outbox_id,
    )
    return row


async def mark_sent(conn: Connection, *, outbox_id: int) -> None:
    """Sent, also when a revocation cancelled it while it was on its way: it did go out."""
    await conn.execute(
        "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,"
        " error = NULL WHERE id = $1 AND status IN ('pending', 'cancelled')",
        outbox_id,
    )


async def mark_failed(conn: Connection, *, outbox_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE email_outbox SET status = 'failed', attempts = attempts + 1, error = $2"
        " WHERE id = $1 AND status = 'pending'",
        outbox_id,
        error[:2000],
    )
