"""``POST /business/certificate-vault/upload-file`` through the real app, storage and database."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.resources import FILES
from service.uploads import sweep_expired
from tests.conftest import TokenFactory, bearer
from tests.samples import make_jpeg, make_pdf, make_png
from tests.test_intake import bomb_png, encrypted_pdf, zip_bytes

URL = "/business/certificate-vault/upload-file"
MB20 = 20 * 1024 * 1024


def file_form(
    data: bytes, filename: str = "cert.pdf", content_type: str | None = None
) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    return form


async def upload(
    client: TestClient, token: str, form: object, **kwargs: object
) -> aiohttp.ClientResponse:
    return await client.post(URL, data=form, headers=bearer(token), **kwargs)  # type: ignore[arg-type]


def stored_files(settings_root: Path) -> list[Path]:
    root = settings_root / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def assert_nothing_kept(conn: asyncpg.Connection, data_dir: Path) -> None:
    assert await conn.fetchval("SELECT count(*) FROM uploads") == 0
    assert stored_files(data_dir) == []
    spool = data_dir / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "filename", "mime"),
    [
        (make_pdf(), "diploma.pdf", "application/pdf"),
        (make_png(300, 200), "diploma.png", "image/png"),
        (make_jpeg(300, 200), "diploma.jpeg", "image/jpeg"),
        (make_jpeg(300, 200), "diploma.JPG", "image/jpeg"),
    ],
)
async def test_upload_accepts_pdf_png_jpeg(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    data: bytes,
    filename: str,
    mime: str,
) -> None:
    token = await make_token("certificate-vault:create")
    response = await upload(client, token, file_form(data, filename))
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["message"] == "File uploaded successfully"
    assert body["data"]["mime_type"] == mime
    assert body["data"]["size"] == len(data)
    assert body["data"]["file_name"] == filename
    row = await conn.fetchrow(
        "SELECT * FROM uploads WHERE uuid = $1::uuid", body["data"]["file_id"]
    )
    assert row["mime_type"] == mime
    assert filename not in row["storage_key"]
    assert await client.app[FILES].get_bytes(row["storage_key"]) == data


async def test_upload_needs_the_create_permission(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("certificate-vault:list")
    response = await upload(client, token, file_form(make_pdf()))
    assert response.status == 403
    assert await response.json() == {
        "message": "Forbidden - Insufficient permissions",
        "required_permission": "certificate-vault:create",
    }
    assert (await client.post(URL, data=file_form(make_pdf()))).status == 401


BAD_FILES = {
    "html": (b"<!DOCTYPE html><html><body>x</body></html>", "cert.pdf", "must be a file of type"),
    "svg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "c.svg", "type"),
    "exe": (b"MZ\x90\x00\x03" + bytes(200), "setup.pdf", "must be a file of type"),
    "zip": (zip_bytes(), "cert.pdf", "must be a file of type"),
    "empty": (b"", "cert.pdf", "empty"),
    "png_named_pdf": (make_png(50, 50), "cert.pdf", "does not match"),
    "truncated_jpeg": (make_jpeg(400, 300, noise=True)[:3000], "c.jpg", "not a readable image"),
    "truncated_pdf": (
        make_pdf(pages=3)[: len(make_pdf(pages=3)) // 2],
        "c.pdf",
        "not a readable PDF",
    ),
    "encrypted_pdf": (encrypted_pdf("user-secret"), "c.pdf", "password"),
    "bomb": (bomb_png(20000, 20000), "c.png", "too large"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_bad_files_are_422_on_file_and_leave_nothing(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: object,
    case: str,
) -> None:
    data, filename, fragment = BAD_FILES[case]
    token = await make_token("certificate-vault:create")
    response = await upload(client, token, file_form(data, filename))
    assert response.status == 422, await response.text()
    body = await response.json()
    assert list(body["errors"]) == ["file"]
    assert fragment in body["errors"]["file"][0]
    assert body["message"] == body["errors"]["file"][0]
    await assert_nothing_kept(conn, settings.data_dir)  # type: ignore[attr-defined]


async def test_declared_content_type_must_match(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("certificate-vault:create")
    response = await upload(client, token, file_form(make_pdf(), "c.pdf", "image/png"))
    assert response.status == 422
    assert "declared content type" in (await response.json())["errors"]["file"][0]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (None, {}),
        (b"", {"Content-Type": "multipart/form-data"}),
        (b"just text", {"Content-Type": "text/plain"}),
        (b'{"file": "x"}', {"Content-Type": "application/json"}),
        (b"--x\r\n\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}),
        (b"garbage without boundaries", {"Content-Type": "multipart/form-data; boundary=zz"}),
    ],
    ids=["no-body", "no-boundary", "text", "json", "empty-part", "garbage"],
)
async def test_malformed_requests_are_422_on_file(
    client: TestClient, make_token: TokenFactory, body: bytes | None, headers: dict[str, str]
) -> None:
    token = await make_token("certificate-vault:create")
    response = await client.post(URL, data=body, headers={**bearer(token), **headers})
    assert response.status == 422, await response.text()
    payload = await response.json()
    assert "errors" in payload and payload["message"]


async def test_missing_file_field_and_text_instead_of_file(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("certificate-vault:create")
    form = aiohttp.FormData()
    form.add_field("other", io.BytesIO(make_pdf()), filename="c.pdf")
    response = await upload(client, token, form)
    assert response.status == 422
    assert (await response.json())["errors"] == {"file": ["The file field is required."]}
    text_form = aiohttp.FormData({"file": "not a file"})
    response = await upload(client, token, text_form)
    assert response.status == 422
    assert list((await response.json())["errors"]) == ["file"]


async def test_two_files_are_refused(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, settings: object
) -> None:
    token = await make_token("certificate-vault:create")
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(make_pdf()), filename="a.pdf")
    form.add_field("file", io.BytesIO(make_pdf()), filename="b.pdf")
    response = await upload(client, token, form)
    assert response.status == 422
    assert "Only one file" in (await response.json())["errors"]["file"][0]
    await assert_nothing_kept(conn, settings.data_dir)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw_name", "expected"),
    [
        ("../../x.pdf", "x.pdf"),
        ("C:\\evil\\x.pdf", "x.pdf"),
        ("evil\u202egpj.pdf", "evilgpj.pdf"),
        ("x" * 1000 + ".pdf", None),
    ],
)
async def test_hostile_file_names_are_sanitized(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    raw_name: str,
    expected: str | None,
) -> None:
    token = await make_token("certificate-vault:create")
    boundary = "b0undary"
    quoted = raw_name.replace("\\", "\\\\").replace('"', '\\"')
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode("utf-8", "surrogateescape")
        + make_pdf()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = await client.post(
        URL,
        data=body,
        headers={**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status == 201, await response.text()
    name = (await response.json())["data"]["file_name"]
    if expected is not None:
        assert name == expected
    assert len(name) <= 255 and name.endswith(".pdf")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    key = await conn.fetchval("SELECT storage_key FROM uploads")
    assert "evil" not in key and ".." not in key


async def test_control_characters_in_names_are_removed(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("certificate-vault:create")
    boundary = "b0undary"
    # RFC 5987 encoding smuggles NUL, BEL and CR/LF past the header parser into the name.
    disposition = "form-data; name=\"file\"; filename*=UTF-8''a%00b%07c%0D%0AX.pdf"
    body = (
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        + make_pdf()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**bearer(token), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(URL, data=body, headers=headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["data"]["file_name"] == "abcX.pdf"
    raw_nul = body.replace(disposition.encode(), b'form-data; name="file"; filename="a\x00b.pdf"')
    response = await client.post(URL, data=raw_nul, headers=headers)
    assert response.status == 422


async def test_twenty_megabytes_pass_and_one_byte_more_fails(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, settings: object
) -> None:
    token = await make_token("certificate-vault:create")
    pdf = make_pdf()
    # A valid PDF padded with a comment to exactly 20 MB (trailing bytes after %%EOF are allowed).
    exact = pdf + b"%" + b"x" * (MB20 - len(pdf) - 2) + b"\n"
    assert len(exact) == MB20
    ok = await upload(client, token, file_form(exact))
    assert ok.status == 201, await ok.text()
    await conn.execute("DELETE FROM uploads")
    for path in stored_files(settings.data_dir):  # type: ignore[attr-defined]
        path.unlink()
    too_big = await upload(client, token, file_form(exact + b"x"))
    assert too_big.status == 422
    assert (await too_big.json())["errors"]["file"] == [
        "The file must not be greater than 20480 kilobytes."
    ]
    await assert_nothing_kept(conn, settings.data_dir)  # type: ignore[attr-defined]


async def test_quota_refuses_uploads_beyond_the_cap(
    settings: object, aiohttp_client: object, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    from service.app import create_app

    limited = settings.with_overrides(upload_quota_bytes=1024 * 1024 + 10)  # type: ignore[attr-defined]
    client = await aiohttp_client(create_app(limited))  # type: ignore[operator]
    token = await make_token("certificate-vault:create")
    pdf = make_pdf()
    padded = pdf + b"%" + b"x" * (700 * 1024) + b"\n"
    assert (await upload(client, token, file_form(padded))).status == 201
    response = await upload(client, token, file_form(padded))
    assert response.status == 422
    assert "quota" in (await response.json())["errors"]["file"][0]
    # the refused file and its intent are gone at once, not left to housekeeping
    assert len(stored_files(limited.data_dir)) == 1  # type: ignore[attr-defined]
    assert await conn.fetchval("SELECT count(*) FROM file_intents") == 0


async def test_sweeper_deletes_expired_unconsumed_uploads(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, settings: object
) -> None:
    token = await make_token("certificate-vault:create")
    for _ in range(3):
        assert (await upload(client, token, file_form(make_pdf()))).status == 201
    await conn.execute(
        "UPDATE uploads SET expires_at = now() - interval '1 second'"
        " WHERE id IN (SELECT id FROM uploads ORDER BY id LIMIT 2)"
    )
    from service.keys import POOL

    assert await sweep_expired(client.app[POOL], client.app[FILES]) == 2
    assert await conn.fetchval("SELECT count(*) FROM uploads") == 1
    assert len(stored_files(settings.data_dir)) == 1  # type: ignore[attr-defined]
    assert await sweep_expired(client.app[POOL], client.app[FILES]) == 0
