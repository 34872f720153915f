"""SQL for webhooks: endpoints, deliveries (written with the state change they report), attempts.

Certificate payloads are built by PostgreSQL from the certificate row (``jsonb_build_object``), so
a batch's 10,000 ``created`` deliveries never travel through Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from service.data import Connection


def iso(column: str) -> str:
    """SQL for a timestamp as the API writes it: ISO-8601 UTC with microseconds and a Z."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# $2: the event, $3: the service's base URL. ``c`` is the certificate.
CERTIFICATE_DATA = f"""
jsonb_build_object(
    'application_id', c.id, 'uuid', c.uuid, 'reference_id', c.reference_id,
    'certificate_title', c.certificate_title, 'full_name', c.full_name,
    'applicant_email', c.applicant_email, 'issue_date', c.issue_date,
    'source', 'vault', 'trigger_context', c.trigger_context,
    'batch_id', (SELECT b.uuid FROM batches b WHERE b.id = c.batch_id),
    'created_at', {iso("c.created_at")}
) || CASE $2::text
    WHEN 'certificate_application.approved' THEN jsonb_build_object(
        'verification_url', $3::text || '/verify/' || c.reference_id,
        'download_path', $3::text || '/business/certificate-vault/' || c.uuid || '/download',
        'verified_pdf_sha256', c.verified_pdf_sha256,
        'generated_at', {iso("c.generated_at")})
    WHEN 'certificate_application.failed' THEN jsonb_build_object('error', c.error)
    WHEN 'certificate_application.revoked' THEN jsonb_build_object(
        'verification_url', $3::text || '/verify/' || c.reference_id,
        'revoked_at', {iso("c.revoked_at")}, 'revocation_reason', c.revocation_reason)
    ELSE '{{}}'::jsonb END
"""
SUBSCRIBED = "e.active AND $2::text = ANY (e.events)"
ENDPOINT_COLUMNS = (
    "e.id, e.uuid, e.url, e.description, e.events, e.active, e.disabled_reason, e.disabled_at,"
    " e.failing_since, e.last_success_at, e.last_failure_at, e.created_at, e.updated_at"
)


# --- endpoints ---


async def create_endpoint(
    conn: Connection,
    *,
    institution_id: int,
    url: str,
    events: list[str],
    description: str | None,
    secret: str,
    max_endpoints: int,
) -> asyncpg.Record | None:
    """The new endpoint; None when the institution already has ``max_endpoints`` of them."""
    async with conn.transaction():
        # serialises concurrent creations of one institution, so the limit holds
        await conn.execute(
            "SELECT 1 FROM institutions WHERE id = $1 FOR NO KEY UPDATE", institution_id
        )
        count = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE institution_id = $1", institution_id
        )
        if count >= max_endpoints:
            return None
        row: asyncpg.Record | None = await conn.fetchrow(
            "INSERT INTO webhook_endpoints AS e (institution_id, url, events, description, secret)"
            f" VALUES ($1, $2, $3, $4, $5) RETURNING {ENDPOINT_COLUMNS}, e.secret",
            *(institution_id, url, events, description, secret),
        )
    return row


async def list_endpoints(
    conn: Connection, *, institution_id: int, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE e.institution_id = $1"
        " ORDER BY e.id DESC LIMIT $2 OFFSET $3",
        *(institution_id, limit, offset),
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE institution_id = $1", institution_id
    )
    return list(rows), total


async def find_endpoint(
    conn: Connection, *, institution_id: int, endpoint_uuid: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e"
        " WHERE e.uuid = $1 AND e.institution_id = $2",
        *(endpoint_uuid, institution_id),
    )
    return row


async def delete_endpoint(
    conn: Connection, *, institution_id: int, endpoint_uuid: uuid.UUID
) -> bool:
    """Delete it with its deliveries and attempts; their queued jobs find nothing and stop."""
    status = await conn.execute(
        "DELETE FROM webhook_endpoints WHERE uuid = $1 AND institution_id = $2",
        *(endpoint_uuid, institution_id),
    )
    return status == "DELETE 1"


async def list_attempts(
    conn: Connection, *, endpoint_id: int, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        "SELECT a.attempt, a.status_code, a.duration_ms, a.error, a.response_excerpt,"
        " a.next_retry_at, a.created_at, d.uuid AS delivery_uuid, d.event,"
        " d.status AS delivery_status"
        " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
        " WHERE a.endpoint_id = $1 ORDER BY a.id DESC LIMIT $2 OFFSET $3",
        *(endpoint_id, limit, offset),
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1", endpoint_id
    )
    return list(rows), total


# --- deliveries, created with the state change they report ---


async def has_subscriber(conn: Connection, *, institution_id: int, event: str) -> bool:
    found: bool = await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.institution_id = $1"
        f" AND {SUBSCRIBED})",
        *(institution_id, event),
    )
    return found


async def insert_deliveries(
    conn: Connection, *, institution_id: int, event: str, data: dict[str, Any]
) -> list[int]:
    """One delivery per active endpoint subscribed to ``event``; their ids."""
    rows = await conn.fetch(
        "INSERT INTO webhook_deliveries (endpoint_id, event, data)"
        f" SELECT e.id, $2, $3::jsonb FROM webhook_endpoints e"
        f" WHERE e.institution_id = $1 AND {SUBSCRIBED} RETURNING id",
        *(institution_id, event, data),
    )
    return [row["id"] for row in rows]


async def insert_certificate_deliveries(
    conn: Connection, *, certificate_ids: Sequence[int], event: str, base_url: str
) -> list[int]:
    """One delivery of a certificate event per certificate and subscribed endpoint (none twice
    for ``created``)."""
    rows = await conn.fetch(
        "INSERT INTO webhook_deliveries (endpoint_id, event, certificate_id, data)"
        f" SELECT e.id, $2, c.id, {CERTIFICATE_DATA}"
        " FROM certificates c JOIN webhook_endpoints e ON e.institution_id = c.institution_id"
        f" WHERE c.id = ANY($1::bigint[]) AND {SUBSCRIBED} ORDER BY c.id, e.id"
        " ON CONFLICT DO NOTHING RETURNING id",
        *(list(certificate_ids), event, base_url),
    )
    return [row["id"] for row in rows]


async def insert_batch_chunk(
    conn: Connection, *, batch_id: int, event: str, base_url: str, after: int, limit: int
) -> tuple[int | None, list[int]]:
    """Deliveries for the next ``limit`` certificates of a batch (by id, after ``after``).

    Returns the last certificate id of the chunk (None: the batch is done) and the new
    deliveries' ids; the ones a previous run already created are skipped.
    """
    row = await conn.fetchrow(
        "WITH chunk AS (SELECT id FROM certificates WHERE batch_id = $1 AND id > $4"
        " ORDER BY id LIMIT $5), ins AS ("
        " INSERT INTO webhook_deliveries (endpoint_id, event, certificate_id, data)"
        f" SELECT e.id, $2, c.id, {CERTIFICATE_DATA}"
        " FROM chunk JOIN certificates c ON c.id = chunk.id"
        " JOIN webhook_endpoints e ON e.institution_id = c.institution_id"
        f" WHERE {SUBSCRIBED} ON CONFLICT DO NOTHING RETURNING id)"
        " SELECT (SELECT max(id) FROM chunk) AS last_id, ARRAY(SELECT id FROM ins) AS ids",
        *(batch_id, event, base_url, after, limit),
    )
    assert row is not None  # a SELECT without FROM returns one row
    return row["last_id"], list(row["ids"])


async def insert_ping(
    conn: Connection, *, endpoint_id: int, data: dict[str, Any]
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO webhook_deliveries (endpoint_id, event, data) VALUES ($1, 'ping', $2::jsonb)"
        " RETURNING id, uuid",
        *(endpoint_id, data),
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def purge_finished(conn: Connection, *, older_than_s: float, limit: int = 10_000) -> int:
    """Delete up to ``limit`` deliveries finished more than ``older_than_s`` ago (attempts too)."""
    status = await conn.execute(
        "DELETE FROM webhook_deliveries WHERE id = ANY (ARRAY(SELECT id FROM webhook_deliveries"
        " WHERE finished_at < now() - make_interval(secs => $1) ORDER BY finished_at LIMIT $2))",
        *(older_than_s, limit),
    )
    return int(status.split()[-1])
