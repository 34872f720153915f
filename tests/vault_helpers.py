"""Helpers shared by the vault tests: uploads, bulk bodies, waiting for the pipeline."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from service.config import Settings
from service.resources import FILES
from tests.conftest import bearer
from tests.samples import make_pdf

UPLOAD_URL = "/business/certificate-vault/upload-file"
BULK_URL = "/business/certificate-vault/bulk"


async def upload(
    client: TestClient, token: str, data: bytes | None = None, name: str = "c.pdf"
) -> str:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data or make_pdf()), filename=name)
    response = await client.post(UPLOAD_URL, data=form, headers=bearer(token))
    assert response.status == 201, await response.text()
    file_id: str = (await response.json())["data"]["file_id"]
    return file_id


async def remove_stored_file(client: TestClient, conn: asyncpg.Connection, file_id: str) -> str:
    """Delete an upload's stored file behind the API's back (processing it must fail, not
    hang); its storage key, to put it back."""
    key: str = await conn.fetchval("SELECT storage_key FROM uploads WHERE uuid = $1::uuid", file_id)
    await client.app[FILES].delete(key)
    return key


async def fake_uploads(conn: asyncpg.Connection, *, institution_id: int, count: int) -> list[str]:
    """Upload rows without files, for tests that never reach processing."""
    rows = await conn.fetch(
        "INSERT INTO uploads (institution_id, storage_key, file_name, mime_type, size, sha256,"
        " expires_at) SELECT $1, 'uploads/fake/' || g || '.pdf', 'c' || g || '.pdf',"
        " 'application/pdf', 1000, repeat('0', 64), now() + interval '1 day'"
        " FROM generate_series(1, $2) g RETURNING uuid",
        institution_id,
        count,
    )
    return [str(r["uuid"]) for r in rows]


def entry(file_id: str, n: int = 0, **overrides: Any) -> dict[str, Any]:
    return {
        "certificate_title": f"Certificate of Achievement {n}",
        "full_name": f"Student {n}",
        "applicant_email": f"student{n}@example.com",
        "file_id": file_id,
        "issue_date": "2025-06-01",
        "details": "Awarded for outstanding performance",
        **overrides,
    }


def single_form(n: int = 0, data: bytes | None = None) -> aiohttp.FormData:
    """A single-upload body: entry ``n``'s fields and ``data`` (a one-page PDF) as
    ``certificate_file``."""
    form = aiohttp.FormData()
    for name, value in entry("", n).items():
        if name != "file_id":
            form.add_field(name, value)
    form.add_field("certificate_file", io.BytesIO(data or make_pdf()), filename="single.pdf")
    return form


async def institution_id(conn: asyncpg.Connection, name: str = "Alpha University") -> int:
    value: int = await conn.fetchval("SELECT id FROM institutions WHERE name = $1", name)
    return value


async def wait_for_batch(
    client: TestClient, token: str, batch_id: str, *, timeout_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get(
            f"/business/certificate-vault/batches/{batch_id}", headers=bearer(token)
        )
        batch: dict[str, Any] = (await response.json())["data"]
        if batch["status"] != "processing" or time.monotonic() > deadline:
            return batch
        await asyncio.sleep(0.2)


def start_worker(settings: Settings, dsn: str, **env: str) -> subprocess.Popen[bytes]:
    """``vault-service worker`` as a real process on the test's database and files, with short
    leases; ``env`` adds or overrides settings. It runs in its own process group, so
    ``os.killpg(process.pid, SIGKILL)`` takes its CPU-pool processes along."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": dsn,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "PUBLIC_BASE_URL": settings.base_url,
        "WORKERS": "4",
        "CPU_PROCESSES": "1",
        "JOB_LEASE_S": "4",
        "JOB_TIMEOUT_S": "3",
        "POLL_INTERVAL_S": "0.2",
        "DRAIN_TIMEOUT_S": "2",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=environment,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


async def post_bulk(
    client: TestClient, token: str, body: Any, **headers: str
) -> tuple[int, dict[str, Any]]:
    response = await client.post(BULK_URL, json=body, headers={**bearer(token), **headers})
    return response.status, await response.json()


async def counts(conn: asyncpg.Connection) -> tuple[int, int, int, int]:
    """Rows of batches, certificates, jobs and uploads."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM batches) b, (SELECT count(*) FROM certificates) c,"
        " (SELECT count(*) FROM jobs) j, (SELECT count(*) FROM uploads) u"
    )
    return row["b"], row["c"], row["j"], row["u"]
