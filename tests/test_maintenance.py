"""Housekeeping removes what has expired, and only that."""

from __future__ import annotations

import os
import time

import asyncpg
from aiohttp.test_utils import TestClient

from service import maintenance
from service.emails import SCRATCH_DIR, STALE_SCRATCH_S
from service.files.local import PENDING_DIR, LocalFileStore, write_pending
from service.keys import POOL, SETTINGS
from service.resources import FILES
from tests.conftest import TokenFactory


async def test_housekeeping_purges_expired_keys_and_rate_windows(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    await make_token("all")
    institution_id = await conn.fetchval("SELECT id FROM institutions")
    await conn.execute(
        "INSERT INTO idempotency_keys (institution_id, key, request_hash, created_at)"
        " VALUES ($1, 'old', '\\x00', now() - interval '25 hours'),"
        " ($1, 'fresh', '\\x00', now())",
        institution_id,
    )
    await conn.execute(
        "INSERT INTO rate_limits (bucket, subject, window_start, expires_at, hits) VALUES"
        " ('b', 'old', now() - interval '2 minutes', now() - interval '1 minute', 1),"
        " ('b', 'new', now(), now() + interval '1 minute', 1)"
    )
    await maintenance.run_once(client.app[POOL], client.app[FILES], client.app[SETTINGS])
    assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]
    assert [r["subject"] for r in await conn.fetch("SELECT subject FROM rate_limits")] == ["new"]


async def test_housekeeping_sweeps_renders_nobody_published(client: TestClient) -> None:
    files: LocalFileStore = client.app[FILES]
    abandoned = write_pending(files.root, files.pending_dir, "certificates/ab/a.pdf", b"%PDF-1.7")
    running = write_pending(files.root, files.pending_dir, "certificates/ab/b.pdf", b"%PDF-1.7")
    long_ago = time.time() - 2 * maintenance.PENDING_AGE_S
    os.utime(files.root / PENDING_DIR / abandoned, (long_ago, long_ago))
    await maintenance.run_once(client.app[POOL], files, client.app[SETTINGS])
    left = [p.relative_to(files.root / PENDING_DIR) for p in files.root.glob(f"{PENDING_DIR}/*/*")]
    assert [str(p) for p in left] == [running]


async def test_housekeeping_sweeps_eml_files_of_processes_killed_while_writing(
    client: TestClient,
) -> None:
    settings = client.app[SETTINGS]
    scratch = settings.outbox_dir / SCRATCH_DIR
    dead, live = scratch / "dead", scratch / "live"
    for directory in (dead, live):
        directory.mkdir(parents=True)
        (directory / ".half.eml.tmp").write_bytes(b"From: ")
    long_ago = time.time() - 2 * STALE_SCRATCH_S
    for path in (dead / ".half.eml.tmp", dead):
        os.utime(path, (long_ago, long_ago))
    await maintenance.run_once(client.app[POOL], client.app[FILES], settings)
    assert [p.name for p in scratch.iterdir()] == ["live"]
    assert [p.name for p in live.iterdir()] == [".half.eml.tmp"]  # still being written


async def test_list_totals_follow_every_change_and_survive_compaction(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    from tests.conftest import bearer
    from tests.vault_helpers import BULK_URL, entry, fake_uploads

    token = await make_token("all")
    institution_id = await conn.fetchval("SELECT id FROM institutions")
    files = await fake_uploads(conn, institution_id=institution_id, count=7)
    body = {"entries": [entry(f, n) for n, f in enumerate(files)]}
    assert (await client.post(BULK_URL, json=body, headers=bearer(token))).status == 202
    await conn.execute(
        "UPDATE certificates SET status = 'failed' WHERE entry_index < 3;"
        "UPDATE certificates SET status = 'generated' WHERE entry_index = 3;"
        "DELETE FROM certificates WHERE entry_index = 6"
    )

    async def totals() -> dict[str, int]:
        found = {}
        for status in ("", "pending", "failed", "generated"):
            query = f"?status={status}" if status else ""
            page = await client.get(f"/business/certificate-vault{query}", headers=bearer(token))
            found[status or "all"] = (await page.json())["meta"]["total"]
        return found

    expected = {"all": 6, "pending": 2, "failed": 3, "generated": 1}
    assert await totals() == expected
    assert await conn.fetchval("SELECT count(*) FROM certificate_counts") > 3
    await maintenance.run_once(client.app[POOL], client.app[FILES], client.app[SETTINGS])
    assert await conn.fetchval("SELECT count(*) FROM certificate_counts") == 3
    assert await totals() == expected
