"""For the public side's tests: certificates of any status, with or without code files, and
what a test reads a page with."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import asyncpg
from aiohttp.test_utils import TestClient

from service.data import institutions as institution_data

VALID = "VEC-IC-20250123456789ABC"
REVOKED = "VEC-IC-2025FEDCBA9876543"
PENDING = "VEC-IC-20250000000000001"
FAILED = "VEC-IC-20250000000000002"
PROCESSING = "VEC-IC-20250000000000003"
MISSING = "VEC-IC-2025AAAAAAAAAAAAA"
EMAIL = "ada.private@example.org"
INSTITUTION_EMAIL = "registrar@alpha.test"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none';"
    " base-uri 'none'; form-action 'none'"
)
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
QR_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
BARCODE_SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="5"><rect/></svg>'


async def add_institution(conn: asyncpg.Connection, name: str = "Alpha University") -> int:
    row = await institution_data.create_institution(conn, name=name, email=INSTITUTION_EMAIL)
    return int(row["id"])


async def add_certificate(
    conn: asyncpg.Connection,
    institution_id: int,
    *,
    reference_id: str,
    status: str = "generated",
    full_name: str = "Ada Lovelace",
    title: str = "Bachelor of Science in Mathematics",
    reason: str | None = None,
    qrcode_key: str | None = None,
    barcode_key: str | None = None,
) -> None:
    generated = status in {"generated", "revoked"}
    await conn.execute(
        "INSERT INTO certificates (institution_id, trigger_context, status, reference_id,"
        " certificate_title, full_name, applicant_email, issue_date, file_id, original_key,"
        " original_name, original_mime, original_size, original_sha256, qrcode_key,"
        " barcode_key, generated_at, revoked_at, revocation_reason)"
        " VALUES ($1, 'single_upload', $2, $3, $4, $5, $6, $7, gen_random_uuid(),"
        " 'originals/x.pdf', 'x.pdf', 'application/pdf', 100, $8, $9, $10, $11, $12, $13)",
        institution_id,
        status,
        reference_id,
        title,
        full_name,
        EMAIL,
        date(2025, 6, 1),
        "0" * 64,
        qrcode_key,
        barcode_key,
        datetime(2025, 6, 2, 9, 30, tzinfo=UTC) if generated else None,
        datetime(2025, 7, 14, 12, 0, tzinfo=UTC) if status == "revoked" else None,
        reason,
    )


async def get_page(client: TestClient, reference_id: str) -> tuple[int, str, dict[str, str]]:
    response = await client.get(f"/verify/{reference_id}")
    return response.status, await response.text(), dict(response.headers)


def assert_nothing_private(text: str) -> None:
    assert EMAIL not in text
    assert INSTITUTION_EMAIL not in text
    assert not UUID_RE.search(text)
    assert "originals/" not in text and "codes/" not in text


class TagChecker(HTMLParser):
    """Records start tags and attributes, so a test can see what a browser would build."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parsed_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    checker = TagChecker()
    checker.feed(html)
    return checker.tags
