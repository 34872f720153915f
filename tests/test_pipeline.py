"""End to end: uploads, a bulk request, the workers, and everything a certificate gets."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pikepdf
import pytest
import zxingcpp
from aiohttp.test_utils import TestClient
from yarl import URL

from service.app import create_app
from service.config import Settings
from service.resources import FILES
from tests.artifact_helpers import rasterize_qr_svg
from tests.conftest import TokenFactory, bearer
from tests.samples import make_jpeg, make_pdf, make_png
from tests.vault_helpers import BULK_URL, entry, remove_stored_file, upload, wait_for_batch


@pytest.fixture
def worker_settings(settings: Settings) -> Settings:
    return settings.with_overrides(workers=4, poll_interval_s=0.2, cpu_processes=2)


@pytest.fixture
async def vault(
    worker_settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    return await aiohttp_client(create_app(worker_settings))


async def test_a_bulk_batch_ends_generated_with_every_artifact(
    vault: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, worker_settings: Settings
) -> None:
    token = await make_token("all")
    await conn.execute(
        "INSERT INTO recipients (email, name) VALUES ('Known.Person@Example.com', 'Known Person')"
    )
    originals = [make_pdf(pages=2), make_png(400, 300), make_jpeg(400, 300)]
    files = [
        await upload(vault, token, data, name)
        for data, name in zip(originals, ["a.pdf", "b.png", "c.jpg"], strict=True)
    ]
    entries = [entry(f, n) for n, f in enumerate(files)]
    entries[1]["applicant_email"] = "known.person@example.com"
    response = await vault.post(BULK_URL, json={"entries": entries}, headers=bearer(token))
    assert response.status == 202
    batch_id = (await response.json())["data"]["batch_id"]

    batch = await wait_for_batch(vault, token, batch_id)
    assert batch["status"] == "completed", batch
    assert batch["processed_certificates"] == 3 and batch["failed_certificates"] == 0
    assert batch["progress"] == 100.0 and batch["completion_date"] is not None

    listing = await vault.get(
        f"/business/certificate-vault?batch_id={batch_id}", headers=bearer(token)
    )
    items = (await listing.json())["data"]
    assert len(items) == 3 and {i["status"]["value"] for i in items} == {"generated"}
    for item in items:
        detail = await (
            await vault.get(f"/business/certificate-vault/{item['uuid']}", headers=bearer(token))
        ).json()
        data = detail["data"]
        assert data["reference_id"].startswith("VEC-IC-")
        assert [d["type"] for d in data["documents"]] == ["original", "verified_pdf"]
        assert data["qrcode_path"].endswith(
            f"/public/certificates/{data['reference_id']}/qr_code.svg"
        )
        for path in (data["qrcode_path"], data["barcode_path"]):
            svg = await vault.get(URL(path).path)
            assert svg.status == 200 and svg.content_type == "image/svg+xml"
            assert (await svg.read()).lstrip().startswith(b"<?xml")
        qr_svg = await (await vault.get(URL(data["qrcode_path"]).path)).read()
        decoded = zxingcpp.read_barcodes(rasterize_qr_svg(qr_svg))
        assert [result.text for result in decoded] == [data["verification_url"]]
        pdf = await vault.get(
            f"/business/certificate-vault/{item['uuid']}/download", headers=bearer(token)
        )
        assert pdf.status == 200 and pdf.content_type == "application/pdf"
        assert "attachment" in pdf.headers["Content-Disposition"]
        body = await pdf.read()
        assert hashlib.sha256(body).hexdigest() == data["documents"][1]["sha256"]
        with pikepdf.open(io.BytesIO(body)) as document:
            assert len(document.pages) == (2 if data["full_name"] == "Student 0" else 1)

    assigned = await conn.fetch(
        "SELECT applicant_email, assigned_at FROM certificates ORDER BY entry_index"
    )
    assert assigned[1]["assigned_at"] is not None
    assert assigned[0]["assigned_at"] is None and assigned[2]["assigned_at"] is None
    await wait_for_outbox(conn, sent=2)
    emails = sorted(Path(worker_settings.outbox_dir).glob("*.eml"))
    assert len(emails) == 2
    recipients = {
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"]
        .addresses[0]
        .addr_spec
        for p in emails
    }
    assert recipients == {"student0@example.com", "student2@example.com"}
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


async def wait_for_outbox(conn: asyncpg.Connection, *, sent: int) -> None:
    import asyncio

    for _ in range(100):
        if await conn.fetchval("SELECT count(*) FROM email_outbox WHERE status = 'sent'") >= sent:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("emails were not sent")


async def test_a_broken_original_fails_with_its_error_and_can_be_retried(
    vault: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    good, bad = await upload(vault, token), await upload(vault, token)
    key = await remove_stored_file(vault, conn, bad)
    body = {"entries": [entry(good, 0), entry(bad, 1)]}
    batch_id = (await (await vault.post(BULK_URL, json=body, headers=bearer(token))).json())[
        "data"
    ]["batch_id"]
    batch = await wait_for_batch(vault, token, batch_id)
    assert batch["status"] == "partially_completed", batch
    assert (batch["processed_certificates"], batch["failed_certificates"]) == (1, 1)

    errors = await (
        await vault.get(
            f"/business/certificate-vault/batches/{batch_id}/errors", headers=bearer(token)
        )
    ).json()
    assert len(errors["data"]) == 1
    failed: dict[str, Any] = errors["data"][0]
    assert failed["entry_index"] == 1 and "missing" in failed["error"]

    await vault.app[FILES].put_bytes(key, make_pdf(), "application/pdf")
    retried = await vault.post(
        f"/business/certificate-vault/{failed['uuid']}/retry", headers=bearer(token)
    )
    assert retried.status == 200
    payload = await retried.json()
    assert payload["message"] == "Vault certificate retry initiated"
    assert payload["data"]["status"]["value"] in {"processing", "generated"}
    again = await vault.post(
        f"/business/certificate-vault/{failed['uuid']}/retry", headers=bearer(token)
    )
    assert again.status in {200, 422}
    batch = await wait_for_batch(vault, token, batch_id)
    assert batch["status"] == "completed", batch
    not_failed = await vault.post(
        f"/business/certificate-vault/{failed['uuid']}/retry", headers=bearer(token)
    )
    assert not_failed.status == 422
    assert await not_failed.json() == {"message": "Only failed vault certificates can be retried"}
