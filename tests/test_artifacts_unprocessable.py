"""Originals that cannot be processed: each raises ArtifactError with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import pikepdf
import pytest

from service.artifacts import ArtifactError
from tests import samples
from tests.artifact_helpers import JPEG, PDF, PNG, render


def _encrypted_pdf() -> bytes:
    with pikepdf.open(io.BytesIO(samples.make_pdf())) as pdf:
        buffer = io.BytesIO()
        pdf.save(buffer, encryption=pikepdf.Encryption(user="secret", owner="secret"))
    return buffer.getvalue()


def _blank_pdf(pages: int) -> bytes:
    with pikepdf.new() as pdf:
        for _ in range(pages):
            pdf.add_blank_page(page_size=(100, 100))
        buffer = io.BytesIO()
        pdf.save(buffer)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(samples.make_png(8, 8))
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(data)


BAD_ORIGINALS = {
    "not-a-pdf": (b"hello, I am plain text", PDF, "could not be read"),
    "pdf-header-only": (b"%PDF-1.7\n", PDF, "could not be read"),
    "pdf-password": (_encrypted_pdf(), PDF, "password"),
    "pdf-too-many-pages": (_blank_pdf(1001), PDF, "more than 1000 pages"),
    "png-garbage": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, PNG, "could not be read"),
    "png-truncated": (samples.make_png(300, 300, noise=True)[:5000], PNG, "could not be read"),
    "png-bomb": (_png_claiming(60_000, 60_000), PNG, "too large"),
    "jpeg-truncated": (samples.make_jpeg(300, 300, noise=True)[:3000], JPEG, "could not be read"),
    "jpeg-is-png": (samples.make_png(30, 30), JPEG, "could not be read"),
    "gif": (b"GIF89a" + b"\x00" * 20, "image/gif", "Unsupported file type"),
}


@pytest.mark.parametrize(
    ("data", "mime_type", "message"), BAD_ORIGINALS.values(), ids=BAD_ORIGINALS.keys()
)
def test_unprocessable_originals_raise_artifact_error(
    data: bytes, mime_type: str, message: str
) -> None:
    with pytest.raises(ArtifactError, match=message):
        render(data, mime_type)
