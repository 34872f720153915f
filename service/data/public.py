"""SQL for the public side: what a verification page may show, and the public artifact files.

Only certificates that were generated (and possibly revoked since) are ever found here.
"""

from __future__ import annotations

import asyncpg

from service.data import Connection

# An allow-list: nothing private (email, internal ids, uuid, storage keys) leaves this query.
FIND_PUBLIC_CERTIFICATE = (
    "SELECT c.reference_id, c.status, c.certificate_title, c.full_name, c.issue_date,"
    " c.generated_at, c.revoked_at, c.revocation_reason, i.name AS institution_name,"
    " (c.qrcode_key IS NOT NULL OR EXISTS (SELECT 1 FROM certificate_codes cc"
    " WHERE cc.certificate_id = c.id)) AS has_qr_code"
    " FROM certificates c JOIN institutions i ON i.id = c.institution_id"
    " WHERE c.reference_id = $1 AND c.status IN ('generated', 'revoked')"
)

# The codes in the database, or the files of certificates generated before they were kept there.
FIND_CODES = (
    "SELECT cc.qr_code_svg, cc.barcode_svg, c.qrcode_key, c.barcode_key FROM certificates c"
    " LEFT JOIN certificate_codes cc ON cc.certificate_id = c.id"
    " WHERE c.reference_id = $1 AND c.status IN ('generated', 'revoked')"
)


async def find_public_certificate(conn: Connection, *, reference_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(FIND_PUBLIC_CERTIFICATE, reference_id)
    return row


async def find_codes(conn: Connection, *, reference_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(FIND_CODES, reference_id)
    return row
