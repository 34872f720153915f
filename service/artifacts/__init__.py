"""Certificate artifacts: QR code, barcode and verified PDF, as pure synchronous functions.

``render_artifacts`` is the one entry point; it is picklable and CPU-bound, for a process pool.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.artifacts import codes, images, stamp, verified
from service.artifacts.codes import REFERENCE_ID_RE, new_reference_id
from service.artifacts.errors import ArtifactError

__all__ = [
    "REFERENCE_ID_RE",
    "ArtifactError",
    "Artifacts",
    "new_reference_id",
    "render_artifacts",
]

PDF = "application/pdf"
IMAGE_TYPES = ("image/jpeg", "image/png")


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifacts:
    qr_svg: bytes
    barcode_svg: bytes
    verified_pdf: bytes
    verified_pdf_sha256: str  # lowercase hex


def render_artifacts(
    original: bytes,
    mime_type: str,
    *,
    reference_id: str,
    verify_url: str,
    institution_name: str,
) -> Artifacts:
    """The QR and barcode SVGs and the stamped PDF of one certificate.

    Raises ArtifactError (human-readable message) when the original cannot be processed.
    """
    if mime_type != PDF and mime_type not in IMAGE_TYPES:
        raise ArtifactError(f"Unsupported file type {mime_type!r}: expected a PDF, JPEG or PNG.")
    qr = codes.make_qr(verify_url)
    content = stamp.StampContent(
        qr_rows=codes.qr_rows(qr),
        barcode_modules=codes.barcode_modules(reference_id),
        reference_id=reference_id,
        verify_url=verify_url,
        institution_name=institution_name,
    )
    stamp_stream = stamp.render_stamp(content)
    if mime_type == PDF:
        verified_pdf = verified.stamp_pdf(original, stamp_stream)
    else:
        verified_pdf = images.image_pdf(original, mime_type, stamp_stream)
    return Artifacts(
        qr_svg=codes.qr_svg(qr),
        barcode_svg=codes.barcode_svg(reference_id),
        verified_pdf=verified_pdf,
        verified_pdf_sha256=hashlib.sha256(verified_pdf).hexdigest(),
    )
