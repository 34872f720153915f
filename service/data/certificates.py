"""SQL for vault certificates: bulk intake, reads with filters, and status changes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.data import Connection
from service.queue import producer

COPY_COLUMNS = (
    "institution_id",
    "batch_id",
    "entry_index",
    "trigger_context",
    "certificate_title",
    "full_name",
    "applicant_email",
    "issue_date",
    "details",
    "file_id",
    "original_key",
    "original_name",
    "original_mime",
    "original_size",
    "original_sha256",
)
SUMMARY_COLUMNS = (
    "c.id, c.uuid, c.reference_id, c.certificate_title, c.full_name, c.applicant_email,"
    " c.issue_date, c.status, c.created_at, c.updated_at"
)
DETAIL_COLUMNS = (
    SUMMARY_COLUMNS + ", c.institution_id, c.details, c.trigger_context,"
    " c.verified_pdf_key, c.verified_pdf_size, c.verified_pdf_sha256,"
    " c.original_key, c.original_name, c.original_mime, c.original_size, c.original_sha256,"
    " c.assigned_at, c.error, c.generated_at, c.revoked_at, c.revocation_reason,"
    " (SELECT bt.uuid FROM batches bt WHERE bt.id = c.batch_id) AS batch_uuid,"
    " i.name AS institution_name, i.email AS institution_email,"
    " i.phone_number AS institution_phone_number, i.address AS institution_address,"
    " i.contact_person AS institution_contact_person, i.website AS institution_website"
)
COMPACT_LOCK_KEY = 0x7661_756C_7401
REFERENCE_PREFIX = "VEC-IC-"
SEARCH_EXPRESSION = (
    "lower(coalesce(c.reference_id, '') || ' ' || c.certificate_title || ' ' || c.full_name"
    " || ' ' || c.applicant_email)"
)


async def copy_certificates(conn: Connection, *, records: Sequence[tuple[Any, ...]]) -> None:
    """Binary COPY: the fastest way in for a bulk batch (``records`` follow COPY_COLUMNS)."""
    await conn.copy_records_to_table("certificates", records=records, columns=COPY_COLUMNS)


# Which of a batch's certificates share a job: small PDFs. An image's render, or a large PDF's,
# may take long enough to want a time limit of its own.
SHARES_A_JOB = "original_mime = 'application/pdf' AND original_size <= {max_bytes}"


async def enqueue_batch(
    conn: Connection, *, batch_id: int, kinds: tuple[str, str], per_job: int, shared_max_bytes: int
) -> None:
    """The batch's jobs, created server-side (no ids round-trip), of ``kinds`` (shared, own):
    small PDFs ``per_job`` to a job, every other certificate a job of its own."""
    shared, own = kinds
    max_bytes = shared_max_bytes if per_job > 1 else -1  # -1: none shares a job
    await producer.enqueue_chunks(
        conn,
        shared,
        batch_id,  # the chunks' ref id, $2 in the query
        "SELECT id FROM certificates"
        f" WHERE batch_id = $2 AND {SHARES_A_JOB.format(max_bytes='$4')}",
        per_job,
        max_bytes,
    )
    await producer.enqueue_select(
        conn,
        own,
        "SELECT id FROM certificates"
        f" WHERE batch_id = $2 AND NOT ({SHARES_A_JOB.format(max_bytes='$3')}) ORDER BY id",
        batch_id,
        max_bytes,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ListFilter:
    institution_id: int
    search: str | None = None
    status: str | None = None
    applicant_email: str | None = None
    batch_id: uuid.UUID | None = None


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(filters: ListFilter) -> tuple[str, list[Any]]:
    clauses = ["c.institution_id = $1"]
    args: list[Any] = [filters.institution_id]
    if filters.status:
        args.append(filters.status)
        clauses.append(f"c.status = ${len(args)}")
    if filters.applicant_email:
        args.append(filters.applicant_email.lower())
        clauses.append(f"lower(c.applicant_email) = ${len(args)}")
    if filters.batch_id:
        args.append(filters.batch_id)
        clauses.append(f"c.batch_id = (SELECT id FROM batches WHERE uuid = ${len(args)})")
    if filters.search and filters.search.upper().startswith(REFERENCE_PREFIX):
        # a reference id, whole or its beginning: the unique index answers it directly
        args.append(f"{_escape_like(filters.search.upper())}%")
        clauses.append(f"c.reference_id LIKE ${len(args)}")
    elif filters.search:
        args.append(f"%{_escape_like(filters.search.lower())}%")
        clauses.append(f"{SEARCH_EXPRESSION} LIKE ${len(args)}")
    return " AND ".join(clauses), args


async def list_certificates(
    conn: Connection, *, filters: ListFilter, limit: int, offset: int
) -> list[asyncpg.Record]:
    where, args = _where(filters)
    n = len(args)
    rows = await conn.fetch(
        f"SELECT {SUMMARY_COLUMNS} FROM certificates c WHERE {where}"
        f" ORDER BY c.id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *args,
        limit,
        offset,
    )
    return list(rows)


async def count_matches(conn: Connection, *, filters: ListFilter, at_most: int | None) -> int:
    """The number of certificates the filters match; a free-text search stops at ``at_most``."""
    if not (filters.search or filters.applicant_email or filters.batch_id):
        return await count_certificates(
            conn, institution_id=filters.institution_id, status=filters.status
        )
    where, args = _where(filters)
    query = f"SELECT count(*) FROM certificates c WHERE {where}"
    if at_most is not None and filters.search:
        # no ORDER BY: any at_most matches end the scan, whatever order the plan finds them in
        args.append(at_most)
        query = (
            f"SELECT count(*) FROM (SELECT FROM certificates c WHERE {where}"
            f" LIMIT ${len(args)}) AS matches"
        )
    total: int = await conn.fetchval(query, *args)
    return total


async def count_certificates(conn: Connection, *, institution_id: int, status: str | None) -> int:
    """From the counts the triggers keep (sql/0004): no scan of the institution's rows."""
    total: int = await conn.fetchval(
        "SELECT coalesce(sum(delta), 0)::bigint FROM certificate_counts"
        " WHERE institution_id = $1 AND ($2::text IS NULL OR status = $2)",
        institution_id,
        status,
    )
    return total


async def compact_counts(conn: Connection) -> None:
    """Fold the count deltas into one row per institution and status (one replica at a time)."""
    async with conn.transaction():
        if await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", COMPACT_LOCK_KEY):
            await conn.execute(
                "WITH gone AS (DELETE FROM certificate_counts"
                " RETURNING institution_id, status, delta)"
                " INSERT INTO certificate_counts (institution_id, status, delta)"
                " SELECT institution_id, status, sum(delta) FROM gone"
                " GROUP BY institution_id, status HAVING sum(delta) <> 0"
            )


async def find_certificate(
    conn: Connection, *, institution_id: int, certificate_uuid: uuid.UUID
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {DETAIL_COLUMNS} FROM certificates c"
        " JOIN institutions i ON i.id = c.institution_id"
        " WHERE c.uuid = $1 AND c.institution_id = $2",
        certificate_uuid,
        institution_id,
    )
    return row


async def failed_in_batch(
    conn: Connection, *, batch_id: int, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    rows = await conn.fetch(
        f"SELECT {SUMMARY_COLUMNS}, c.entry_index, c.error FROM certificates c"
        " WHERE c.batch_id = $1 AND c.status = 'failed' ORDER BY c.id LIMIT $2 OFFSET $3",
        batch_id,
        limit,
        offset,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM certificates WHERE batch_id = $1 AND status = 'failed'", batch_id
    )
    return list(rows), total


async def mark_retried(
    conn: Connection, *, institution_id: int, certificate_uuid: uuid.UUID
) -> asyncpg.Record | None:
    """``failed`` → ``processing``; None when it was not failed."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE certificates SET status = 'processing', error = NULL, updated_at = now()"
        " WHERE uuid = $1 AND institution_id = $2 AND status = 'failed'"
        " RETURNING id, uuid, batch_id",
        certificate_uuid,
        institution_id,
    )
    return row


async def insert_certificate(
    conn: Connection, *, record: tuple[Any, ...], status: str
) -> asyncpg.Record:
    """One certificate (single upload): the same columns as the bulk COPY, and a status."""
    count = len(COPY_COLUMNS)
    placeholders = ", ".join(f"${n}" for n in range(1, count + 2))
    row = await conn.fetchrow(
        f"INSERT INTO certificates ({', '.join(COPY_COLUMNS)}, status) VALUES ({placeholders})"
        " RETURNING id, uuid",
        *record,
        status,
    )
    assert row is not None  # INSERT ... RETURNING always returns the row
    return row


async def revoke(conn: Connection, *, key: str, reason: str | None) -> asyncpg.Record | None:
    """``generated`` → ``revoked``; its email, if not sent yet, is cancelled with it."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "WITH revoked AS (UPDATE certificates SET status = 'revoked', revoked_at = now(),"
        " revocation_reason = $2, updated_at = now()"
        " WHERE (uuid::text = lower($1) OR reference_id = upper($1)) AND status = 'generated'"
        " RETURNING id, uuid, reference_id, institution_id),"
        " cancelled AS (UPDATE email_outbox o SET status = 'cancelled',"
        " error = 'The certificate was revoked before its email was sent.'"
        " FROM revoked r WHERE o.certificate_id = r.id AND o.status = 'pending')"
        " SELECT * FROM revoked",
        key,
        reason,
    )
    return row
