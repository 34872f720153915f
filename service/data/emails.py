"""SQL for the recipient email outbox."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from service.data import Connection


async def add_to_outbox(
    conn: Connection, *, certificate_ids: Sequence[int], message_ids: Sequence[str]
) -> list[int]:
    """Each certificate's one outbox row; the ids of those written (not the ones that had one)."""
    rows = await conn.fetch(
        "INSERT INTO email_outbox (certificate_id, message_id)"
        " SELECT * FROM unnest($1::bigint[], $2::text[]) ORDER BY 1"
        " ON CONFLICT (certificate_id) DO NOTHING RETURNING id",
        list(certificate_ids),
        list(message_ids),
    )
    return [row["id"] for row in rows]


async def load_emails(
    conn: Connection, *, outbox_ids: Sequence[int]
) -> list[asyncpg.Record | None]:
    """Each email with what it is composed of, or None; in order."""
    rows = await conn.fetch(
        "SELECT o.id, o.status, c.status AS certificate_status, o.message_id, c.uuid,"
        " c.reference_id, c.full_name, c.applicant_email, c.certificate_title,"
        " i.name AS institution_name"
        " FROM unnest($1::bigint[]) WITH ORDINALITY AS u (id, n)"
        " LEFT JOIN (email_outbox o JOIN certificates c ON c.id = o.certificate_id"
        " JOIN institutions i ON i.id = c.institution_id) ON o.id = u.id ORDER BY u.n",
        list(outbox_ids),
    )
    return [row if row["id"] is not None else None for row in rows]


async def mark_sent(conn: Connection, *, outbox_ids: Sequence[int]) -> None:
    """Sent, also when a revocation cancelled it while it was on its way: it did go out."""
    await conn.execute(
        "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1,"
        " error = NULL WHERE id = ANY($1::bigint[]) AND status IN ('pending', 'cancelled')",
        list(outbox_ids),
    )


async def mark_failed(conn: Connection, *, outbox_id: int, error: str) -> None:
    await conn.execute(
        "UPDATE email_outbox SET status = 'failed', attempts = attempts + 1, error = $2"
        " WHERE id = $1 AND status = 'pending'",
        outbox_id,
        error[:2000],
    )
