"""JSON shapes of certificates and batches, as the contract writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg

from service.verification import public_artifact_url, verification_url

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record

STATUSES: dict[str, dict[str, str]] = {
    "pending": {
        "label": "Pending",
        "color": "gray",
        "icon": "heroicon-o-clock",
        "description": "Certificate is queued for processing",
    },
    "processing": {
        "label": "Processing",
        "color": "info",
        "icon": "heroicon-o-arrow-path",
        "description": "Certificate is being processed",
    },
    "generated": {
        "label": "Generated",
        "color": "success",
        "icon": "heroicon-o-check-circle",
        "description": "Certificate has been successfully generated",
    },
    "failed": {
        "label": "Failed",
        "color": "danger",
        "icon": "heroicon-o-x-circle",
        "description": "Certificate processing failed; it can be retried",
    },
    "revoked": {
        "label": "Revoked",
        "color": "warning",
        "icon": "heroicon-o-no-symbol",
        "description": "Certificate has been revoked by its institution",
    },
}
SOURCE = {"value": "vault", "label": "Vault"}


def status_object(status: str) -> dict[str, str]:
    return {"value": status, **STATUSES[status]}


def public_url(base_url: str, reference_id: str | None, name: str) -> str | None:
    return public_artifact_url(base_url, reference_id, name) if reference_id else None


def certificate_summary(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "uuid": row["uuid"],
        "reference_id": row["reference_id"],
        "certificate_title": row["certificate_title"],
        "full_name": row["full_name"],
        "applicant_email": row["applicant_email"],
        "source": SOURCE,
        "status": status_object(row["status"]),
        "issue_date": row["issue_date"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def documents(row: Row, base_url: str) -> list[dict[str, Any]]:
    own = f"{base_url}/business/certificate-vault/{row['uuid']}"
    listed = [
        {
            "id": f"{row['uuid']}-original",
            "type": "original",
            "path": f"{own}/original",
            "file_name": row["original_name"],
            "mime_type": row["original_mime"],
            "size": row["original_size"],
            "sha256": row["original_sha256"],
        }
    ]
    if row["verified_pdf_key"] and row["status"] in {"generated", "revoked"}:
        listed.append(
            {
                "id": f"{row['uuid']}-verified_pdf",
                "type": "verified_pdf",
                "path": f"{own}/download",
                "file_name": f"{row['reference_id']}.pdf",
                "mime_type": "application/pdf",
                "size": row["verified_pdf_size"],
                "sha256": row["verified_pdf_sha256"],
            }
        )
    return listed


def certificate_detail(row: Row, base_url: str) -> dict[str, Any]:
    reference_id = row["reference_id"] if row["status"] in {"generated", "revoked"} else None
    return {
        **certificate_summary(row),
        "details": row["details"],
        "qrcode_path": public_url(base_url, reference_id, "qr_code.svg"),
        "barcode_path": public_url(base_url, reference_id, "barcode.svg"),
        "verification_url": verification_url(base_url, reference_id) if reference_id else None,
        "applicant_phone_number": None,
        "institution_name": row["institution_name"],
        "institution_email": row["institution_email"],
        "institution_phone_number": row["institution_phone_number"],
        "institution_address": row["institution_address"],
        "institution_contact_person": row["institution_contact_person"],
        "institution_website": row["institution_website"],
        "trigger_context": row["trigger_context"],
        "batch_id": row["batch_uuid"],
        "assigned_at": row["assigned_at"],
        "generated_at": row["generated_at"],
        "revoked_at": row["revoked_at"],
        "revocation_reason": row["revocation_reason"],
        "error": row["error"] if row["status"] == "failed" else None,
        "documents": documents(row, base_url),
    }


def batch(row: Row) -> dict[str, Any]:
    total = row["total_certificates"]
    done = row["processed_certificates"] + row["failed_certificates"]
    return {
        "id": row["uuid"],
        "status": row["status"],
        "total_certificates": total,
        "processed_certificates": row["processed_certificates"],
        "failed_certificates": row["failed_certificates"],
        "progress": round(100.0 * done / total, 2) if total else 0.0,
        "completion_date": row["completion_date"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
