"""The public side: the verification page, its JSON twin and the public SVG files."""

from __future__ import annotations

import re

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import verification
from service.resources import FILES
from tests.verify_helpers import (
    BARCODE_SVG,
    CSP,
    FAILED,
    HOSTILE,
    MISSING,
    PENDING,
    PROCESSING,
    QR_SVG,
    REVOKED,
    VALID,
    add_certificate,
    add_institution,
    assert_nothing_private,
    get_page,
    parsed_tags,
)


@pytest.fixture
async def certificates(client: TestClient, conn: asyncpg.Connection) -> int:
    institution_id = await add_institution(conn)
    files = client.app[FILES]
    await files.put_bytes("codes/valid-qr.svg", QR_SVG, "image/svg+xml")
    await files.put_bytes("codes/valid-bar.svg", BARCODE_SVG, "image/svg+xml")
    await add_certificate(
        conn,
        institution_id,
        reference_id=VALID,
        qrcode_key="codes/valid-qr.svg",
        barcode_key="codes/valid-bar.svg",
    )
    await add_certificate(
        conn,
        institution_id,
        reference_id=REVOKED,
        status="revoked",
        reason="Issued in error",
        qrcode_key="codes/valid-qr.svg",
        barcode_key="codes/missing-bar.svg",
    )
    for reference_id, status in ((PENDING, "pending"), (FAILED, "failed")):
        await add_certificate(
            conn, institution_id, reference_id=reference_id, status=status, qrcode_key="codes/x"
        )
    await add_certificate(conn, institution_id, reference_id=PROCESSING, status="processing")
    return institution_id


async def test_valid_certificate_page(client: TestClient, certificates: int) -> None:
    status, html, headers = await get_page(client, VALID)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Verified" in html and "state-valid" in html
    for shown in ("Ada Lovelace", "Bachelor of Science in Mathematics", "Alpha University"):
        assert shown in html
    assert "1 June 2025" in html
    assert f'<code class="ref">{VALID}</code>' in html
    assert f'src="/public/certificates/{VALID}/qr_code.svg"' in html
    assert "Checked on" in html
    assert_nothing_private(html)


async def test_page_security_headers(client: TestClient, certificates: int) -> None:
    for reference_id in (VALID, REVOKED, MISSING, "nonsense"):
        _, _, headers = await get_page(client, reference_id)
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Cache-Control"] == "no-store"


async def test_page_loads_only_same_origin_resources_that_exist(
    client: TestClient, certificates: int
) -> None:
    _, html, _ = await get_page(client, VALID)
    tags = parsed_tags(html)
    assert not [tag for tag, _ in tags if tag in {"script", "iframe", "object", "form"}]
    assert not [attrs for _, attrs in tags if "style" in attrs]  # CSP: no inline styles
    references = [a.get("src") or a.get("href") for t, a in tags if t in {"link", "img"}]
    assert len(references) == 2
    for reference in references:
        assert reference and reference.startswith("/")
        asset = await client.get(reference)
        assert asset.status == 200, reference
    css = await client.get(next(r for r in references if r and ".css" in r))
    assert css.headers["Content-Type"] == "text/css; charset=utf-8"
    assert "immutable" in css.headers["Cache-Control"]
    assert ".badge" in await css.text()


async def test_revoked_certificate_page(client: TestClient, certificates: int) -> None:
    status, html, _ = await get_page(client, REVOKED)
    assert status == 200
    assert "Revoked" in html and "state-revoked" in html
    assert "This certificate has been revoked" in html
    assert "14 July 2025" in html and "Issued in error" in html
    assert "Ada Lovelace" in html and "Alpha University" in html
    assert "qr_code.svg" not in html
    assert_nothing_private(html)


def _without_variables(html: str, reference_id: str) -> str:
    html = html.replace(reference_id, "REF")
    return re.sub(r"<time [^>]*>[^<]*</time>", "<time/>", html)


async def test_unknown_hides_why(client: TestClient, certificates: int) -> None:
    status, missing, _ = await get_page(client, MISSING)
    assert status == 404
    assert "Not found" in missing and "state-unknown" in missing
    assert "Ada Lovelace" not in missing
    baseline = _without_variables(missing, MISSING)
    for reference_id in (PENDING, FAILED, PROCESSING):
        status, html, _ = await get_page(client, reference_id)
        assert status == 404
        assert _without_variables(html, reference_id) == baseline


MALFORMED = (
    "abc",
    VALID.lower(),
    VALID + "0",
    "VEC-IC-25AB",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E",
    "A" * 500,
)


async def test_malformed_ids_are_unknown(client: TestClient, certificates: int) -> None:
    for reference_id in MALFORMED:
        status, html, headers = await get_page(client, reference_id)
        assert status == 404
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "No certificate found" in html
        assert "<script>" not in html and "<img src=x" not in html
        assert "A" * 41 not in html  # a long id is cut short
        response = await client.get(f"/api/verify/{reference_id}")
        assert response.status == 404
        assert (await response.json())["error"] == "resource_not_found"


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_values_are_escaped(
    client: TestClient, conn: asyncpg.Connection, hostile: str
) -> None:
    institution_id = await add_institution(conn, name=f"Evil {hostile} College")
    await add_certificate(
        conn, institution_id, reference_id=VALID, full_name=hostile, title=f"T {hostile}"
    )
    await add_certificate(
        conn, institution_id, reference_id=REVOKED, status="revoked", reason=hostile
    )
    for reference_id in (VALID, REVOKED):
        _, html, _ = await get_page(client, reference_id)
        assert hostile not in html
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "&quot;&gt;&lt;img" in html
        assert "img" not in [tag for tag, _ in parsed_tags(html)]
    body = await (await client.get(f"/api/verify/{VALID}")).json()
    assert body["data"]["full_name"] == hostile


async def test_json_valid(client: TestClient, certificates: int) -> None:
    response = await client.get(f"/api/verify/{VALID}")
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    text = await response.text()
    assert_nothing_private(text)
    assert await response.json() == {
        "data": {
            "reference_id": VALID,
            "status": "valid",
            "certificate_title": "Bachelor of Science in Mathematics",
            "full_name": "Ada Lovelace",
            "institution_name": "Alpha University",
            "issue_date": "2025-06-01",
            "issued_at": "2025-06-02T09:30:00.000000Z",
            "revoked_at": None,
            "revocation_reason": None,
        }
    }


async def test_json_revoked(client: TestClient, certificates: int) -> None:
    body = await (await client.get(f"/api/verify/{REVOKED}")).json()
    assert body["data"]["status"] == "revoked"
    assert body["data"]["revoked_at"] == "2025-07-14T12:00:00.000000Z"
    assert body["data"]["revocation_reason"] == "Issued in error"


async def test_json_unknown(client: TestClient, certificates: int) -> None:
    for reference_id in (MISSING, PENDING, FAILED, PROCESSING):
        response = await client.get(f"/api/verify/{reference_id}")
        assert response.status == 404
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.json() == {
            "message": f"The requested ID {reference_id} was not found.",
            "error": "resource_not_found",
        }


async def test_public_svg_files(client: TestClient, certificates: int) -> None:
    for name, data in (("qr_code.svg", QR_SVG), ("barcode.svg", BARCODE_SVG)):
        response = await client.get(f"/public/certificates/{VALID}/{name}")
        assert response.status == 200
        assert await response.read() == data
        assert response.headers["Content-Type"] == "image/svg+xml"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'none'; style-src 'unsafe-inline'"
        )


async def test_public_svg_not_found(client: TestClient, certificates: int) -> None:
    for path in (
        f"/public/certificates/{PENDING}/qr_code.svg",
        f"/public/certificates/{FAILED}/qr_code.svg",
        f"/public/certificates/{PROCESSING}/qr_code.svg",
        f"/public/certificates/{MISSING}/qr_code.svg",
        f"/public/certificates/{REVOKED}/barcode.svg",  # key set, file gone from the store
        "/public/certificates/nonsense/qr_code.svg",
        f"/public/certificates/{VALID}/original.pdf",
    ):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.headers["Content-Type"].startswith("application/json")
        assert (await response.json())["error"] == "resource_not_found"


async def test_revoked_certificate_keeps_its_qr_code(client: TestClient, certificates: int) -> None:
    response = await client.get(f"/public/certificates/{REVOKED}/qr_code.svg")
    assert response.status == 200


async def test_routes_are_documented(client: TestClient) -> None:
    spec = await (await client.get("/api/docs/openapi.json")).json()
    page = spec["paths"]["/verify/{reference_id}"]["get"]
    assert set(page["responses"]["404"]["content"]) == {"text/html"}
    assert "429" in page["responses"]
    data = spec["paths"]["/api/verify/{reference_id}"]["get"]["responses"]
    assert {"200", "404", "429"} <= set(data)
    for name in ("qr_code.svg", "barcode.svg"):
        svg = spec["paths"][f"/public/certificates/{{reference_id}}/{name}"]["get"]
        assert "image/svg+xml" in svg["responses"]["200"]["content"]


def test_public_urls() -> None:
    base = "https://vault.example.org/"
    assert verification.public_artifact_url(base, VALID, "qr_code.svg") == (
        f"https://vault.example.org/public/certificates/{VALID}/qr_code.svg"
    )
    assert verification.public_artifact_url("", VALID, "barcode.svg") == (
        f"/public/certificates/{VALID}/barcode.svg"
    )
    assert verification.verification_url(base, VALID) == f"https://vault.example.org/verify/{VALID}"
    with pytest.raises(ValueError, match="unknown public artifact"):
        verification.public_artifact_url(base, VALID, "original.pdf")
