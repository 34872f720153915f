"""A certificate's QR code and barcode, kept in the database since 0010, beside the files of
certificates generated before: both are served, the database's copy first."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from service.resources import FILES
from tests.verify_helpers import BARCODE_SVG, QR_SVG, add_certificate, add_institution

VALID = "VEC-IC-2026ABCDEF0123456"
PENDING = "VEC-IC-20260000000000009"
OLDER = "VEC-IC-2026000000000000A"


async def add_codes(conn: asyncpg.Connection, reference_id: str, qr: bytes, bar: bytes) -> None:
    await conn.execute(
        "INSERT INTO certificate_codes (certificate_id, qr_code_svg, barcode_svg)"
        " SELECT id, $2, $3 FROM certificates WHERE reference_id = $1",
        reference_id,
        qr,
        bar,
    )


async def test_codes_are_served_from_the_database(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    institution_id = await add_institution(conn)
    await add_certificate(conn, institution_id, reference_id=VALID)
    await add_codes(conn, VALID, QR_SVG, BARCODE_SVG)
    for name, data in (("qr_code.svg", QR_SVG), ("barcode.svg", BARCODE_SVG)):
        response = await client.get(f"/public/certificates/{VALID}/{name}")
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/svg+xml"
        assert await response.read() == data
    page = await (await client.get(f"/verify/{VALID}")).text()
    assert f'src="/public/certificates/{VALID}/qr_code.svg"' in page


async def test_codes_of_a_certificate_not_generated_stay_private(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    institution_id = await add_institution(conn)
    await add_certificate(conn, institution_id, reference_id=PENDING, status="processing")
    await add_codes(conn, PENDING, QR_SVG, BARCODE_SVG)
    for name in ("qr_code.svg", "barcode.svg"):
        response = await client.get(f"/public/certificates/{PENDING}/{name}")
        assert response.status == 404


async def test_database_copy_first_then_the_older_file(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    institution_id = await add_institution(conn)
    files = client.app[FILES]
    await files.put_bytes("codes/old-qr.svg", b"<svg>old qr</svg>", "image/svg+xml")
    await files.put_bytes("codes/old-bar.svg", b"<svg>old bar</svg>", "image/svg+xml")
    keys = {"qrcode_key": "codes/old-qr.svg", "barcode_key": "codes/old-bar.svg"}
    await add_certificate(conn, institution_id, reference_id=VALID, **keys)
    await add_certificate(conn, institution_id, reference_id=OLDER, **keys)
    await add_codes(conn, VALID, QR_SVG, BARCODE_SVG)
    served = {}
    for reference_id in (VALID, OLDER):
        for name in ("qr_code.svg", "barcode.svg"):
            response = await client.get(f"/public/certificates/{reference_id}/{name}")
            assert response.status == 200
            served[reference_id, name] = await response.read()
    assert served == {
        (VALID, "qr_code.svg"): QR_SVG,
        (VALID, "barcode.svg"): BARCODE_SVG,
        (OLDER, "qr_code.svg"): b"<svg>old qr</svg>",
        (OLDER, "barcode.svg"): b"<svg>old bar</svg>",
    }
