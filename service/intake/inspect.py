"""Decide an upload's type from its bytes and check that it really opens as that type.

``inspect_file`` is CPU-bound and not thread-safe (pdfium, warning filters): run it in a
process pool. Messages are safe to return to clients: no paths, no library internals.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import filetype
import pypdfium2 as pdfium
from PIL import Image

HEAD_BYTES = 8192
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_PAGES = 1000
EXTENSIONS = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
_EXTENSION_ALIASES = {"pdf": {"pdf"}, "jpg": {"jpg", "jpeg"}, "png": {"png"}}
_CONTENT_TYPE_ALIASES = {
    "pdf": {"application/pdf", "application/x-pdf"},
    "jpg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "png": {"image/png", "image/x-png"},
}
_EXTENSION_RE = re.compile(r"\.([a-z0-9]{1,5})$")
_GENERIC_CONTENT_TYPES = {"", "application/octet-stream", "binary/octet-stream"}

WRONG_TYPE = "The file must be a file of type: pdf, jpg, jpeg, png."
UNREADABLE_PDF = "The file is not a readable PDF."
PASSWORD_PDF = "The file is a password-protected PDF."
ENCRYPTED_PDF = "The file is an encrypted PDF; upload it without encryption."
EMPTY_PDF = "The file is a PDF without pages."
UNREADABLE_IMAGE = "The file is not a readable image."


class InvalidUpload(Exception):
    """The upload is not an acceptable PDF, JPEG or PNG; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class FileKind:
    mime_type: str
    extension: str
    pages: int | None = None
    width: int | None = None
    height: int | None = None


def sniff_mime(head: bytes) -> str | None:
    """The accepted MIME type the magic bytes announce, or None for anything else."""
    kind = filetype.guess(head) if head else None
    return kind.mime if kind is not None and kind.mime in EXTENSIONS else None


def inspect_file(
    path: str, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_pages: int = DEFAULT_MAX_PAGES
) -> FileKind:
    """Sniff the type, then open the file fully; raises ``InvalidUpload`` with the reason."""
    with open(path, "rb") as file:
        mime_type = sniff_mime(file.read(HEAD_BYTES))
    if mime_type is None:
        raise InvalidUpload(WRONG_TYPE)
    if mime_type == "application/pdf":
        return _inspect_pdf(path, max_pages)
    return _inspect_image(path, mime_type, max_pixels)


def check_declared(
    kind: FileKind, client_filename: str, declared_content_type: str | None
) -> str | None:
    """A problem message when the name's extension or the declared type contradicts the bytes."""
    extension = _extension_of(client_filename)
    if extension and extension not in _EXTENSION_ALIASES[kind.extension]:
        return f"The file extension .{extension} does not match its content ({kind.extension})."
    declared = (declared_content_type or "").split(";")[0].strip().lower()
    if declared not in _GENERIC_CONTENT_TYPES and (
        declared not in _CONTENT_TYPE_ALIASES[kind.extension]
    ):
        return f"The declared content type does not match its content ({kind.extension})."
    return None


def _extension_of(filename: str) -> str | None:
    # Only what looks like a type suffix: "Dr. Jane Doe" or "minutes v1.2" have none.
    match = _EXTENSION_RE.search(filename.lower())
    return match[1] if match and not match[1].isdigit() else None


def _inspect_pdf(path: str, max_pages: int) -> FileKind:
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise InvalidUpload(PASSWORD_PDF if _needs_password(exc, path) else UNREADABLE_PDF) from exc
    try:
        return FileKind(
            mime_type="application/pdf", extension="pdf", pages=_check_pdf(document, max_pages)
        )
    finally:
        document.close()


def _needs_password(exc: pdfium.PdfiumError, path: str) -> bool:
    # pdfium's last-error code is process-wide and some failures leave it untouched, so a
    # stale "password" code is confirmed against the file itself.
    if getattr(exc, "err_code", None) != pdfium.raw.FPDF_ERR_PASSWORD:
        return False
    with open(path, "rb") as file:
        return b"/Encrypt" in file.read()


def _check_pdf(document: pdfium.PdfDocument, max_pages: int) -> int:
    # An owner password alone opens without a prompt, but it still restricts what we may do.
    if pdfium.raw.FPDF_GetSecurityHandlerRevision(document.raw) != -1:
        raise InvalidUpload(ENCRYPTED_PDF)
    pages = len(document)
    if pages < 1:
        raise InvalidUpload(EMPTY_PDF)
    if pages > max_pages:
        raise InvalidUpload(f"The PDF has too many pages ({pages}; at most {max_pages}).")
    for index in range(pages):
        try:
            document[index].close()
        except pdfium.PdfiumError as exc:
            raise InvalidUpload(UNREADABLE_PDF) from exc
    return pages


def _inspect_image(path: str, mime_type: str, max_pixels: int) -> FileKind:
    formats = [_PILLOW_FORMATS[mime_type]]
    try:
        with _pixel_limit_checked_here():
            with Image.open(path, formats=formats) as image:
                _check_pixels(image.size, max_pixels)
                image.verify()
            # verify() leaves the image unusable and misses truncated JPEG data: decode it all.
            with Image.open(path, formats=formats) as image:
                _check_pixels(image.size, max_pixels)
                image.load()
                width, height = image.size
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidUpload(UNREADABLE_IMAGE) from exc
    return FileKind(
        mime_type=mime_type, extension=EXTENSIONS[mime_type], width=width, height=height
    )


@contextlib.contextmanager
def _pixel_limit_checked_here() -> Iterator[None]:
    """Swap Pillow's process-wide bomb limit for the per-call one in ``_check_pixels``.

    Pillow checks in ``open`` without telling the size; ours runs right after the header is
    parsed and before any pixel data is decoded. Restored on exit (one call at a time per
    pool process).
    """
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise InvalidUpload(f"The image is too large ({pixels} pixels; at most {max_pixels}).")
