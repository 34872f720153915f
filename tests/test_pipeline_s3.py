"""End to end on S3 storage (moto on loopback): the original goes to the render process and
its verified PDF comes back to be stored, the path for files not on this machine."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import pikepdf
import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import TokenFactory, bearer
from tests.s3server import ACCESS_KEY, SECRET_KEY, create_bucket, moto_s3
from tests.samples import make_pdf
from tests.vault_helpers import BULK_URL, entry, remove_stored_file, upload, wait_for_batch


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
async def vault(
    settings: Settings, s3_endpoint: str, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    bucket = f"vault-{uuid.uuid4().hex[:12]}"
    await create_bucket(s3_endpoint, bucket)
    on_s3 = settings.with_overrides(
        storage_url=f"s3://{bucket}/vault",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        workers=4,
        poll_interval_s=0.2,
        cpu_processes=1,
    )
    return await aiohttp_client(create_app(on_s3))


async def test_certificates_on_s3_are_generated_and_a_missing_original_fails(
    vault: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    original = make_pdf(pages=2)
    good, gone = await upload(vault, token, original), await upload(vault, token)
    await remove_stored_file(vault, conn, gone)
    body = {"entries": [entry(good, 0), entry(gone, 1)]}
    response = await vault.post(BULK_URL, json=body, headers=bearer(token))
    batch = await wait_for_batch(vault, token, (await response.json())["data"]["batch_id"])
    assert (batch["processed_certificates"], batch["failed_certificates"]) == (1, 1), batch

    generated, failed = await conn.fetch(
        "SELECT uuid::text, status, error FROM certificates ORDER BY entry_index"
    )
    assert generated["status"] == "generated"
    assert failed["status"] == "failed" and "missing" in failed["error"]
    detail = await vault.get(
        f"/business/certificate-vault/{generated['uuid']}", headers=bearer(token)
    )
    documents = (await detail.json())["data"]["documents"]
    download = await vault.get(
        f"/business/certificate-vault/{generated['uuid']}/download", headers=bearer(token)
    )
    assert download.status == 200
    pdf = await download.read()
    assert hashlib.sha256(pdf).hexdigest() == documents[1]["sha256"]
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert len(document.pages) == 2
