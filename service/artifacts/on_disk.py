"""Rendering a certificate whose files are on this machine, inside the render process.

The process reads the original and writes the verified PDF as a pending file of the store
itself: neither file crosses the process boundary, and the service hands a thread one call per
certificate (``LocalFileStore.publish``: fsync, rename under its key, fsync the directory)
instead of a read and a write. Only the job that publishes decides what the key holds: a render
its job abandoned leaves a pending file, never a file under the key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.artifacts import ArtifactError, render_artifacts
from service.files.base import FileMissing, StorageError
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
    pending_dir: str,
    original_key: str,
    verified_pdf_key: str,
    mime_type: str,
    *,
    reference_id: str,
    verify_url: str,
    institution_name: str,
) -> RenderedToDisk:
    """``render_artifacts`` from the original under ``original_key`` of the local store at
    ``root`` to a pending file in its ``pending_dir``, to be published under
    ``verified_pdf_key``."""
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
    pending = write_pending(root, pending_dir, verified_pdf_key, artifacts.verified_pdf)
    return RenderedToDisk(
        pending=pending,
        qr_svg=artifacts.qr_svg,
        barcode_svg=artifacts.barcode_svg,
        verified_pdf_size=len(artifacts.verified_pdf),
        verified_pdf_sha256=artifacts.verified_pdf_sha256,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderOrder:
    """``render_to_disk``'s arguments, for one certificate of many."""

    original_key: str
    verified_pdf_key: str
    mime_type: str
    reference_id: str
    verify_url: str
    institution_name: str


class NotRendered(Exception):
    """Its render was not started: the call's time (``stop_at``) was up."""


# What may come back in place of a certificate's result: each pickles as itself.
KNOWN_FAILURES = (ArtifactError, OriginalMissing, StorageError)


def render_many_to_disk(
    root: Path, pending_dir: str, orders: Sequence[RenderOrder], stop_at: float
) -> list[RenderedToDisk | Exception]:
    """``render_to_disk`` for each, one after the other, none started after ``stop_at`` (a
    ``time.time()``; NotRendered in its place); one that fails gives its error in its place
    and the others go on (an unexpected error comes back as a RuntimeError with its
    description: not every exception pickles)."""
    results: list[RenderedToDisk | Exception] = []
    for order in orders:
        if time.time() >= stop_at:
            results.append(NotRendered())
            continue
        try:
            results.append(
                render_to_disk(
                    root,
                    pending_dir,
                    order.original_key,
                    order.verified_pdf_key,
                    order.mime_type,
                    reference_id=order.reference_id,
                    verify_url=order.verify_url,
                    institution_name=order.institution_name,
                )
            )
        except KNOWN_FAILURES as exc:
            results.append(exc)
        except Exception as exc:
            results.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return results
