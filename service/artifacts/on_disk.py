"""Rendering a certificate whose files are on this machine, inside the render process.

The process reads the original and writes the verified PDF as a pending file of the store
itself: neither file crosses the process boundary, and the service hands a thread one call per
certificate (``LocalFileStore.publish``: fsync, rename under its key, fsync the directory)
instead of a read and a write. Only the job that publishes decides what the key holds: a render
its job abandoned leaves a pending file, never a file under the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.artifacts import render_artifacts
from service.files.base import FileMissing
from service.files.local import read_local, write_pending


class OriginalMissing(Exception):
    """The original file is not in storage (any more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedToDisk:
    pending: str  # the verified PDF's pending file, for ``LocalFileStore.publish``
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
) -> RenderedToDisk:
    """``render_artifacts`` from the original under ``original_key`` of the local store at
    ``root`` to a pending file, to be published under ``verified_pdf_key``."""
    try:
        original = read_local(root, original_key)
    except FileMissing:
        # FileMissing comes back from pickling with its message as its key
        raise OriginalMissing from None
    artifacts = render_artifacts(
        original,
        mime_type,
        reference_id=reference_id,
        verify_url=verify_url,
        institution_name=institution_name,
    )
    pending = write_pending(root, verified_pdf_key, artifacts.verified_pdf)
    return RenderedToDisk(
        pending=pending,
        qr_svg=artifacts.qr_svg,
        barcode_svg=artifacts.barcode_svg,
        verified_pdf_size=len(artifacts.verified_pdf),
        verified_pdf_sha256=artifacts.verified_pdf_sha256,
    )
