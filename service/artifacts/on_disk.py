"""Rendering a certificate whose files are on this machine, inside the render process.

The process reads the original and writes the verified PDF itself: neither file crosses the
process boundary, and the service's event loop hands a thread one fsync per certificate
(``LocalFileStore.make_durable``, before the certificate is recorded) instead of a read and a
write. The PDF is not fsynced here: a render process waiting on the disk leaves a core idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.artifacts import render_artifacts
from service.files.base import FileMissing
from service.files.local import read_local, write_unsynced


class OriginalMissing(Exception):
    """The original file is not in storage (any more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WrittenArtifacts:
    qr_svg: bytes
    barcode_svg: bytes
    verified_pdf_size: int
    verified_pdf_sha256: str


def render_to_disk(
    root: Path,
    original_key: str,
    verified_pdf_key: str,
    mime_type: str,
    *,
    reference_id: str,
    verify_url: str,
    institution_name: str,
) -> WrittenArtifacts:
    """``render_artifacts`` from the original under ``original_key`` to the verified PDF
    under ``verified_pdf_key``, both in the local store at ``root``."""
    try:
        original = read_local(root, original_key)
    except FileMissing:
        raise OriginalMissing from None  # FileMissing itself does not survive pickling
    artifacts = render_artifacts(
        original,
        mime_type,
        reference_id=reference_id,
        verify_url=verify_url,
        institution_name=institution_name,
    )
    write_unsynced(root, verified_pdf_key, artifacts.verified_pdf)
    return WrittenArtifacts(
        qr_svg=artifacts.qr_svg,
        barcode_svg=artifacts.barcode_svg,
        verified_pdf_size=len(artifacts.verified_pdf),
        verified_pdf_sha256=artifacts.verified_pdf_sha256,
    )
