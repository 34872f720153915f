"""The verified PDF of a PDF original: its first page stamped, everything else kept."""

from __future__ import annotations

import io
import math
import re

import pikepdf

from service.artifacts import overlay, sanitize
from service.artifacts.errors import ArtifactError

MAX_PARENT_DEPTH = 64
MAX_PAGES = 1000  # as the upload check; keeps the time a hostile PDF can take bounded


def stamp_pdf(original: bytes, stamp_stream: bytes) -> bytes:
    """``original`` with the stamp on page 1; raises ArtifactError if it cannot be read."""
    try:
        with pikepdf.open(io.BytesIO(original)) as pdf:
            if len(pdf.pages) == 0:
                raise ArtifactError("The PDF has no pages.")
            if len(pdf.pages) > MAX_PAGES:
                raise ArtifactError(f"The PDF has more than {MAX_PAGES} pages.")
            page = pdf.pages[0]
            _own_resources(page)
            box = visible_box(page)
            rotation = page_rotation(page)
            display = (box[2] - box[0], box[3] - box[1])
            matrix = overlay.corner_matrix(box, rotation, overlay.page_scale(*display))
            sanitize.remove_active_content(pdf)
            overlay.hide_annotations_under(page, matrix)
            overlay.apply_stamp(pdf, page, stamp_stream, matrix)
            return save_pdf(pdf)
    except pikepdf.PasswordError as exc:
        raise ArtifactError("The PDF is password-protected.") from exc
    except (pikepdf.PdfError, pikepdf.ForeignObjectError) as exc:
        raise ArtifactError(f"The PDF could not be read: {_first_line(exc)}") from exc


def page_rotation(page: pikepdf.Page) -> int:
    """/Rotate as viewers read it: inherited from the page tree, a real number taken as its
    integer (pikepdf's ``page.rotation`` reads 90.0 as 0), snapped to a quarter turn."""
    node: pikepdf.Object | None = page.obj
    for _ in range(MAX_PARENT_DEPTH):
        if not isinstance(node, pikepdf.Dictionary):
            break
        value = node.get(pikepdf.Name.Rotate)
        if value is not None:
            try:
                # as pdfium: whole quarter turns, truncated towards zero, then normalized
                return int(int(float(value)) / 90) % 4 * 90
            except (TypeError, ValueError):
                return 0
        node = node.get(pikepdf.Name.Parent)
    return 0


def save_pdf(pdf: pikepdf.Pdf, *, min_version: str = "") -> bytes:
    buffer = io.BytesIO()
    # deterministic_id: the /ID is a digest of the content, so the same input gives the
    # same bytes (no clock, no randomness).
    pdf.save(buffer, deterministic_id=True, min_version=min_version)
    return buffer.getvalue()


def visible_box(page: pikepdf.Page) -> tuple[float, float, float, float]:
    """The crop box clipped to the media box, normalized to (x0, y0, x1, y1)."""
    media = _rect(page.mediabox)
    crop = _rect(page.cropbox)
    x0, y0 = max(media[0], crop[0]), max(media[1], crop[1])
    x1, y1 = min(media[2], crop[2]), min(media[3], crop[3])
    # A crop box outside the media box is ignored by viewers; so do we.
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else media


def _rect(array: pikepdf.Array) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(value) for value in array)
    except (TypeError, ValueError) as exc:
        raise ArtifactError("The PDF's first page has no valid page size.") from exc
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x0 == x1 or y0 == y1:
        raise ArtifactError("The PDF's first page has no valid page size.")
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _own_resources(page: pikepdf.Page) -> None:
    # /Resources may be inherited from the page tree; adding the stamp to a page without its
    # own dictionary would hide the inherited fonts and images, so copy them down first.
    if pikepdf.Name.Resources in page.obj:
        return
    node: pikepdf.Object | None = page.obj
    for _ in range(MAX_PARENT_DEPTH):
        node = node.get(pikepdf.Name.Parent) if node is not None else None
        if not isinstance(node, pikepdf.Dictionary):
            break
        inherited = node.get(pikepdf.Name.Resources)
        if isinstance(inherited, pikepdf.Dictionary):
            page.obj.Resources = pikepdf.Dictionary(dict(inherited.items()))
            return
    page.obj.Resources = pikepdf.Dictionary()


def _first_line(exc: Exception) -> str:
    line = (str(exc).strip().splitlines() or ["unknown error"])[0]
    # qpdf names its input first ("stream <_io.BytesIO object at 0x...>: ..."): noise here.
    return re.sub(r"^stream <[^>]*>:?\s*", "", line)[:200]
