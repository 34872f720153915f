"""SQL of processing certificates, set-based: many jobs' certificates in one statement.

Rows are locked in id order (``ORDER BY id FOR NO KEY UPDATE``, the strength of an UPDATE)
in every statement that changes several, so two transactions over overlapping certificates
cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from service.data import Connection

START = (
    "WITH starting AS (SELECT c.id, u.reference_id FROM certificates c"
    " JOIN unnest($1::bigint[], $2::text[]) AS u (id, reference_id) ON u.id = c.id"
    " WHERE c.status IN ('pending', 'processing') ORDER BY c.id FOR NO KEY UPDATE OF c)"
    " UPDATE certificates c SET status = 'processing',"
    " reference_id = coalesce(c.reference_id, s.reference_id), updated_at = now()"
    " FROM starting s, institutions i WHERE c.id = s.id AND i.id = c.institution_id"
    " RETURNING c.id, c.uuid, c.reference_id, c.original_key, c.original_mime,"
    " c.applicant_email, i.name AS institution_name"
)


async def start_processing(
    conn: Connection, *, certificate_ids: Sequence[int], reference_ids: Sequence[str]
) -> dict[int, asyncpg.Record]:
    """Mark them processing, each with a reference id, once: a re-run keeps the first id.
    Those no longer pending or processing are left out."""
    rows = await conn.fetch(START, list(certificate_ids), list(reference_ids))
    return {row["id"]: row for row in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedArtifacts:
    qr_code_svg: bytes
    barcode_svg: bytes
    verified_pdf_key: str
    verified_pdf_size: int
    verified_pdf_sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Generated:
    certificate_id: int
    artifacts: GeneratedArtifacts
    recipient_id: int | None


MARK_GENERATED = (
    "WITH generating AS (SELECT c.id FROM certificates c WHERE c.id = ANY($1::bigint[])"
    " AND c.status = 'processing' ORDER BY c.id FOR NO KEY UPDATE OF c),"
    " input AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[],"
    " $5::bigint[], $6::bytea[], $7::bytea[]) AS u (id, pdf_key, pdf_size, pdf_sha256,"
    " recipient_id, qr_code_svg, barcode_svg)),"
    " generated AS (UPDATE certificates c SET status = 'generated', verified_pdf_key = u.pdf_key,"
    " verified_pdf_size = u.pdf_size, verified_pdf_sha256 = u.pdf_sha256,"
    " recipient_id = u.recipient_id,"
    " assigned_at = CASE WHEN u.recipient_id IS NULL THEN NULL ELSE now() END,"
    " error = NULL, generated_at = now(), updated_at = now()"
    " FROM generating g JOIN input u ON u.id = g.id WHERE c.id = g.id"
    " RETURNING c.id, c.uuid, c.batch_id, c.recipient_id),"
    " codes AS (INSERT INTO certificate_codes (certificate_id, qr_code_svg, barcode_svg)"
    " SELECT g.id, u.qr_code_svg, u.barcode_svg FROM generated g JOIN input u ON u.id = g.id"
    " ON CONFLICT (certificate_id) DO UPDATE"
    " SET qr_code_svg = excluded.qr_code_svg, barcode_svg = excluded.barcode_svg)"
    " SELECT * FROM generated"
)


async def mark_generated(
    conn: Connection, *, certificates: Sequence[Generated]
) -> dict[int, asyncpg.Record]:
    """``processing`` → ``generated``, with their codes; those not processing are left out."""
    artifacts = [c.artifacts for c in certificates]
    rows = await conn.fetch(
        MARK_GENERATED,
        [c.certificate_id for c in certificates],
        [a.verified_pdf_key for a in artifacts],
        [a.verified_pdf_size for a in artifacts],
        [a.verified_pdf_sha256 for a in artifacts],
        [c.recipient_id for c in certificates],
        [a.qr_code_svg for a in artifacts],
        [a.barcode_svg for a in artifacts],
    )
    return {row["id"]: row for row in rows}


async def mark_failed(
    conn: Connection, *, certificate_id: int, error: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE certificates SET status = 'failed', error = $2, updated_at = now()"
        " WHERE id = $1 AND status IN ('pending', 'processing')"
        " RETURNING id, uuid, batch_id",
        certificate_id,
        error[:2000],
    )
    return row
