"""Upload intake: the streaming spool and its size limit (through a real aiohttp server), type
sniffing and deep inspection, and client file name sanitizing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import multiprocessing
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pikepdf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image

from service.errors import FieldValidationError
from service.intake import inspect, names, spool
from service.intake.inspect import FileKind, InvalidUpload, check_declared, inspect_file
from tests.samples import make_jpeg, make_pdf, make_png

KIB = 1024
MIB = 1024 * KIB
SPOOL_DIR = web.AppKey("spool_dir", Path)
LIMIT = web.AppKey("limit", int)
DONE = web.AppKey("done", asyncio.Event)

Client = TestClient[web.Request, web.Application]
ClientMaker = Callable[..., Awaitable[Client]]


# --- spool_part through a real server -------------------------------------------------------


async def upload_handler(request: web.Request) -> web.Response:
    try:
        part = await (await request.multipart()).next()
        if not isinstance(part, aiohttp.BodyPartReader):
            return web.json_response({"message": "no file part"}, status=400)
        try:
            spooled = await spool.spool_part(
                part, directory=request.app[SPOOL_DIR], limit_bytes=request.app[LIMIT], field="file"
            )
        except FieldValidationError as exc:
            return web.json_response(exc.body(), status=422)
        body = {
            "name": spooled.path.name,
            "size": spooled.size,
            "sha256": spooled.sha256,
            "head": spooled.head.hex(),
            "client_filename": spooled.client_filename,
            "declared_content_type": spooled.declared_content_type,
        }
        return web.json_response(body, status=201)
    finally:
        request.app[DONE].set()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def make_client(aiohttp_client: Callable[..., Awaitable[Client]], spool_dir: Path) -> ClientMaker:
    async def build(limit: int, *, handler_cancellation: bool = False) -> Client:
        app = web.Application(client_max_size=KIB)  # not applied to streamed multipart
        app[SPOOL_DIR], app[LIMIT], app[DONE] = spool_dir, limit, asyncio.Event()
        app.router.add_post("/upload", upload_handler)
        server_kwargs = {"handler_cancellation": handler_cancellation}
        return await aiohttp_client(app, server_kwargs=server_kwargs)

    return build


def form(data: bytes, filename: str = "cert.pdf", content_type: str = "application/pdf") -> Any:
    payload = aiohttp.FormData()
    payload.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    return payload


BOUNDARY = "sp00l-b0undary"


def raw_multipart(filename: bytes, data: bytes) -> tuple[bytes, str]:
    """A one-part form body written by hand: ``filename`` goes on the wire as given."""
    head = (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename='
        + filename
        + b"\r\nContent-Type: application/pdf\r\n\r\n"
    )
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode(), (
        f"multipart/form-data; boundary={BOUNDARY}"
    )


def spooled_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


async def post(client: Client, data: bytes, **options: str) -> tuple[int, dict[str, Any]]:
    async with client.post("/upload", data=form(data, **options)) as response:
        return response.status, await response.json()


async def test_spool_exactly_the_limit_passes(make_client: ClientMaker, spool_dir: Path) -> None:
    data = os.urandom(64 * KIB)
    status, body = await post(await make_client(64 * KIB), data, content_type="Image/PNG; x=y")
    assert status == 201
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert bytes.fromhex(body["head"]) == data[: spool.HEAD_BYTES]
    assert body["client_filename"] == "cert.pdf"
    assert body["declared_content_type"] == "image/png"
    [stored] = spooled_files(spool_dir)
    assert stored.name == body["name"]
    assert stored.read_bytes() == data
    assert stored.stat().st_mode & 0o777 == 0o600


async def test_spool_one_byte_over_the_limit_fails(
    make_client: ClientMaker, spool_dir: Path
) -> None:
    status, body = await post(await make_client(64 * KIB), os.urandom(64 * KIB + 1))
    assert status == 422
    assert body == {
        "message": "The file must not be greater than 64 kilobytes.",
        "errors": {"file": ["The file must not be greater than 64 kilobytes."]},
    }
    assert spooled_files(spool_dir) == []


async def test_spool_much_larger_body_is_cut_off(make_client: ClientMaker, spool_dir: Path) -> None:
    status, _ = await post(await make_client(64 * KIB), bytes(8 * MIB))
    assert status == 422
    assert spooled_files(spool_dir) == []


async def test_spool_empty_file_fails(make_client: ClientMaker, spool_dir: Path) -> None:
    status, body = await post(await make_client(64 * KIB), b"")
    assert status == 422
    assert body["errors"] == {"file": ["The file must not be empty."]}
    assert spooled_files(spool_dir) == []


async def test_spool_sanitizes_the_client_name(make_client: ClientMaker) -> None:
    client = await make_client(64 * KIB)
    # Raw, because aiohttp's FormData percent-encodes the name; aiohttp's server returns it
    # verbatim.
    body, content_type = raw_multipart('"../../etc/x\u202e.pdf"'.encode(), b"%PDF-")
    headers = {"Content-Type": content_type}
    async with client.post("/upload", data=body, headers=headers) as response:
        assert response.status == 201
        assert (await response.json())["client_filename"] == "x.pdf"


async def test_spool_real_limit_twenty_megabytes(make_client: ClientMaker, spool_dir: Path) -> None:
    client = await make_client(20 * MIB)
    data = os.urandom(20 * MIB)
    status, body = await post(client, data)
    assert status == 201
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    [stored] = spooled_files(spool_dir)
    stored.unlink()
    status, body = await post(client, data + b"x")
    assert status == 422
    assert body["message"] == "The file must not be greater than 20480 kilobytes."
    assert spooled_files(spool_dir) == []


@pytest.mark.parametrize("cancelled", [False, True], ids=["reset-error", "cancelled"])
async def test_spool_client_disconnect_leaves_no_file(
    make_client: ClientMaker, spool_dir: Path, cancelled: bool
) -> None:
    # aiohttp either raises ConnectionResetError from read_chunk or, with
    # handler_cancellation, cancels the handler: both must remove the file.
    client = await make_client(20 * MIB, handler_cancellation=cancelled)
    body, content_type = raw_multipart(b'"a.pdf"', os.urandom(256 * KIB))
    head = (
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {10 * MIB}\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head.encode() + body[: -len(BOUNDARY) - 8])  # cut before the closing boundary
    await writer.drain()
    async with asyncio.timeout(5):
        while not spooled_files(spool_dir):
            await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    async with asyncio.timeout(5):
        await client.app[DONE].wait()
    assert spooled_files(spool_dir) == []


def test_too_large_message_names_the_field() -> None:
    assert spool.too_large_message("certificate_file", 20 * MIB) == (
        "The certificate file must not be greater than 20480 kilobytes."
    )
    assert spool.too_large_message("file", 1000) == "The file must not be greater than 1000 bytes."


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
