"""Upload intake: the streaming spool and its size limit, through a real aiohttp server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.errors import FieldValidationError
from service.intake import spool

KIB = 1024
MIB = 1024 * KIB
SPOOL_DIR = web.AppKey("spool_dir", Path)
LIMIT = web.AppKey("limit", int)
DONE = web.AppKey("done", asyncio.Event)

Client = TestClient[web.Request, web.Application]
ClientMaker = Callable[..., Awaitable[Client]]


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
