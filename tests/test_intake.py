"""Upload intake: type sniffing and deep inspection, and client file name sanitizing."""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from service.intake import inspect, names
from service.intake.inspect import FileKind, InvalidUpload, check_declared, inspect_file
from tests.samples import make_jpeg, make_pdf, make_png

KIB = 1024


# --- inspect_file ----------------------------------------------------------------------------


def write(tmp_path: Path, data: bytes, name: str = "upload.part") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def rejected(tmp_path: Path, data: bytes, **options: int) -> str:
    with pytest.raises(InvalidUpload) as caught:
        inspect_file(write(tmp_path, data), **options)
    return caught.value.message


def encrypted_pdf(user_password: str) -> bytes:
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(make_pdf())) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner="owner-secret", user=user_password))
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of blank rows: a few hundred KB claiming width * height pixels."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def zip_bytes() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("cert.pdf", make_pdf())
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<!DOCTYPE html><html><body>cert</body></html>", id="html"),
        pytest.param(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', id="svg"),
        pytest.param(b"MZ\x90\x00\x03\x00\x00\x00" + bytes(120) + b"PE\x00\x00", id="exe"),
        pytest.param(zip_bytes(), id="zip"),
        pytest.param(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", id="gif"),
        pytest.param(b"", id="empty"),
        pytest.param(b"just some text named .pdf", id="text"),
    ],
)
def test_inspect_rejects_other_types(tmp_path: Path, data: bytes) -> None:
    assert rejected(tmp_path, data) == "The file must be a file of type: pdf, jpg, jpeg, png."


def test_inspect_accepts_pdf(tmp_path: Path) -> None:
    kind = inspect_file(write(tmp_path, make_pdf(pages=3)))
    assert kind == FileKind(mime_type="application/pdf", extension="pdf", pages=3)


def test_inspect_accepts_png(tmp_path: Path) -> None:
    kind = inspect_file(write(tmp_path, make_png(320, 200, "RGBA")))
    assert kind == FileKind(mime_type="image/png", extension="png", width=320, height=200)


def test_inspect_accepts_jpeg(tmp_path: Path) -> None:
    kind = inspect_file(write(tmp_path, make_jpeg(640, 480, orientation=6)))
    assert kind == FileKind(mime_type="image/jpeg", extension="jpg", width=640, height=480)


def test_inspect_truncated_jpeg(tmp_path: Path) -> None:
    data = make_jpeg(640, 480, noise=True)
    assert rejected(tmp_path, data[: len(data) * 2 // 3]) == "The file is not a readable image."


def test_inspect_truncated_png(tmp_path: Path) -> None:
    data = make_png(640, 480, noise=True)
    assert rejected(tmp_path, data[: len(data) // 2]) == "The file is not a readable image."


def test_inspect_bogus_bytes_behind_png_magic(tmp_path: Path) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)
    assert rejected(tmp_path, data) == "The file is not a readable image."


def test_inspect_truncated_pdf(tmp_path: Path) -> None:
    data = make_pdf(pages=5)
    assert rejected(tmp_path, data[: len(data) // 2]) == "The file is not a readable PDF."


def test_inspect_pdf_header_only(tmp_path: Path) -> None:
    assert rejected(tmp_path, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n") == "The file is not a readable PDF."


def test_inspect_password_protected_pdf(tmp_path: Path) -> None:
    assert rejected(tmp_path, encrypted_pdf("user-secret")) == (
        "The file is a password-protected PDF."
    )


def test_inspect_owner_password_only_pdf(tmp_path: Path) -> None:
    assert rejected(tmp_path, encrypted_pdf("")) == (
        "The file is an encrypted PDF; upload it without encryption."
    )


def test_inspect_pdf_without_pages(tmp_path: Path) -> None:
    out = io.BytesIO()
    with pikepdf.new() as pdf:
        pdf.save(out)
    # pdfium refuses a document without pages and leaves its last-error code as it was: after
    # an encrypted PDF that code still says "password".
    rejected(tmp_path, encrypted_pdf("user-secret"))
    assert rejected(tmp_path, out.getvalue()) == "The file is not a readable PDF."


def test_inspect_pdf_page_cap(tmp_path: Path) -> None:
    message = rejected(tmp_path, make_pdf(pages=4), max_pages=3)
    assert message == "The PDF has too many pages (4; at most 3)."


def test_inspect_decompression_bomb_png(tmp_path: Path) -> None:
    data = bomb_png(20_000, 20_000)
    assert len(data) < 200 * KIB
    assert rejected(tmp_path, data) == (
        "The image is too large (400000000 pixels; at most 50000000)."
    )


def test_inspect_pixel_limit_is_per_call(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = write(tmp_path, make_png(200, 100))
    with pytest.raises(InvalidUpload, match=r"too large \(20000 pixels; at most 19999\)"):
        inspect_file(path, max_pixels=19_999)
    assert before == Image.MAX_IMAGE_PIXELS
    assert inspect_file(path, max_pixels=20_000).width == 200


def test_inspect_runs_in_a_process_pool(tmp_path: Path) -> None:
    good, bad = write(tmp_path, make_pdf(), "good"), write(tmp_path, b"<html>", "bad")
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        assert pool.submit(inspect_file, good).result(timeout=30).pages == 1
        with pytest.raises(InvalidUpload, match="must be a file of type"):
            pool.submit(inspect_file, bad).result(timeout=30)
    assert pickle.loads(pickle.dumps(InvalidUpload("x"))).message == "x"


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"%PDF-1.4\n", "application/pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        (b"GIF89a", None),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None),
        (b"", None),
    ],
)
def test_sniff_mime(head: bytes, mime: str | None) -> None:
    assert inspect.sniff_mime(head) == mime


PNG_KIND = FileKind(mime_type="image/png", extension="png", width=1, height=1)
JPEG_KIND = FileKind(mime_type="image/jpeg", extension="jpg", width=1, height=1)
PDF_NAMED_PNG = "The file extension .pdf does not match its content (png)."
EXE_NAMED_JPG = "The file extension .exe does not match its content (jpg)."
DECLARED_NOT_PNG = "The declared content type does not match its content (png)."


@pytest.mark.parametrize(
    ("kind", "filename", "declared", "problem"),
    [
        (PNG_KIND, "scan.pdf", "image/png", PDF_NAMED_PNG),
        (PNG_KIND, "scan.png", "application/pdf", DECLARED_NOT_PNG),
        (PNG_KIND, "scan.PNG", "IMAGE/PNG; charset=binary", None),
        (PNG_KIND, "scan", "application/octet-stream", None),
        (PNG_KIND, "file", None, None),
        (JPEG_KIND, "photo.jpeg", "image/jpg", None),
        (JPEG_KIND, "photo.JPG", "image/jpeg", None),
        (JPEG_KIND, "photo.jpg.exe", "image/jpeg", EXE_NAMED_JPG),
        (JPEG_KIND, "Dr. Jane Doe", None, None),
        (JPEG_KIND, "minutes v1.2", None, None),
    ],
)  # fmt: skip
def test_check_declared(
    kind: FileKind, filename: str, declared: str | None, problem: str | None
) -> None:
    assert check_declared(kind, filename, declared) == problem


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../x.pdf", "x.pdf"),
        ("/etc/passwd", "passwd"),
        ("C:\\evil\\x.pdf", "x.pdf"),
        ("..\\..\\win.ini", "win.ini"),
        ("cert\x00ificate.pdf", "certificate.pdf"),
        ("a\x01\x1f\x7f\x85b.pdf", "ab.pdf"),
        ("evil\r\nSet-Cookie: x.pdf", "evilSet-Cookie: x.pdf"),
        ("cert\u202efdp.exe", "certfdp.exe"),
        ("\u2066\u2067\u2068x\u2069\u202a\u202b\u202c\u202d.png", "x.png"),
        ("e\u0301cole.pdf", "\u00e9cole.pdf"),
        ("  two   spaces\u2003and\u00a0more .pdf ", "two spaces and more .pdf"),
        ("tab\tinside.pdf", "tabinside.pdf"),
        ("bad\udc80surrogate.png", "badsurrogate.png"),
        ("", "file"),
        (None, "file"),
        ("...", "file"),
        ("dir/", "file"),
        ("\x00\u202e", "file"),
    ],
)
def test_sanitize_filename(raw: str | None, clean: str) -> None:
    assert names.sanitize_filename(raw) == clean


def test_sanitize_filename_caps_long_names_keeping_the_extension() -> None:
    assert names.sanitize_filename("a" * 996 + ".pdf") == "a" * 251 + ".pdf"
    assert names.sanitize_filename("b" * 1000) == "b" * 255
    long_suffix = "x." + "y" * 998
    assert names.sanitize_filename(long_suffix) == long_suffix[:255]


def test_ensure_extension() -> None:
    assert names.ensure_extension("file", "pdf") == "file.pdf"
    assert names.ensure_extension("scan.png", "png") == "scan.png"
    assert len(names.ensure_extension("c" * 255, "jpg")) == 255
