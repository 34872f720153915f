"""Public verification of a certificate by its reference id: valid, revoked or unknown.

Unknown covers every other case (no such id, not generated yet, failed) without saying which.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote

import asyncpg

from service.artifacts.codes import REFERENCE_ID_RE
from service.data import Connection
from service.data import public as public_data

QR_CODE = "qr_code.svg"
BARCODE = "barcode.svg"
# public file name -> its columns: the SVG itself, or the storage key of an older file of it
ARTIFACT_COLUMNS = {QR_CODE: ("qr_code_svg", "qrcode_key"), BARCODE: ("barcode_svg", "barcode_key")}


class Verdict(enum.StrEnum):
    VALID = "valid"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicCertificate:
    """What anyone holding the reference id may see; nothing else is read from the row."""

    reference_id: str
    verdict: Verdict
    certificate_title: str
    full_name: str
    institution_name: str
    issue_date: date | None
    issued_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None
    has_qr_code: bool

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> PublicCertificate:
        revoked = row["status"] == "revoked"
        return cls(
            reference_id=row["reference_id"],
            verdict=Verdict.REVOKED if revoked else Verdict.VALID,
            certificate_title=row["certificate_title"],
            full_name=row["full_name"],
            institution_name=row["institution_name"],
            issue_date=row["issue_date"],
            issued_at=row["generated_at"],
            revoked_at=row["revoked_at"] if revoked else None,
            revocation_reason=row["revocation_reason"] if revoked else None,
            has_qr_code=row["has_qr_code"],
        )


def is_reference_id(value: str) -> bool:
    return REFERENCE_ID_RE.fullmatch(value) is not None


async def look_up(conn: Connection, reference_id: str) -> PublicCertificate | None:
    """The certificate if it is valid or revoked; None when unknown (a malformed id is unknown
    without a query)."""
    if not is_reference_id(reference_id):
        return None
    row = await public_data.find_public_certificate(conn, reference_id=reference_id)
    return PublicCertificate.from_record(row) if row is not None else None


async def public_artifact(conn: Connection, reference_id: str, name: str) -> bytes | str | None:
    """A generated or revoked certificate's public file ``name``: its bytes, or the storage key
    of its file (certificates generated before the codes were kept in the database); else None."""
    columns = ARTIFACT_COLUMNS.get(name)
    if columns is None or not is_reference_id(reference_id):
        return None
    row = await public_data.find_codes(conn, reference_id=reference_id)
    if row is None:
        return None
    data_column, key_column = columns
    found: bytes | str | None = row[data_column] or row[key_column]
    return found


def verification_url(base_url: str, reference_id: str) -> str:
    """The public page a certificate's QR code points to."""
    return f"{base_url.rstrip('/')}/verify/{quote(reference_id, safe='')}"


def public_artifact_url(base_url: str, reference_id: str, name: str) -> str:
    """The public URL of ``qr_code.svg`` or ``barcode.svg`` (``qrcode_path``/``barcode_path``)."""
    if name not in ARTIFACT_COLUMNS:
        raise ValueError(f"unknown public artifact {name!r}")
    reference = quote(reference_id, safe="")
    return f"{base_url.rstrip('/')}/public/certificates/{reference}/{name}"
