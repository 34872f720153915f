"""File intents: a file stored without a row naming it (a crash between the two, a failed
delete) is found and deleted by housekeeping, and never under an upload still being made."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import errors, maintenance, uploads
from service.data import file_intents
from service.files.base import FileStore, StorageError
from service.files.local import LocalFileStore
from service.intake.inspect import FileKind
from service.intake.spool import SpooledFile
from service.keys import POOL, SETTINGS
from service.resources import FILES
from tests.conftest import TokenFactory
from tests.vault_helpers import institution_id, upload


async def intents(conn: asyncpg.Connection) -> list[str]:
    return [r["storage_key"] for r in await conn.fetch("SELECT storage_key FROM file_intents")]


async def housekeeping(client: TestClient) -> None:
    await maintenance.run_once(client.app[POOL], client.app[FILES], client.app[SETTINGS])


async def test_an_upload_leaves_its_file_and_no_intent(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    file_id = await upload(client, await make_token("all"))
    key = await conn.fetchval("SELECT storage_key FROM uploads WHERE uuid = $1::uuid", file_id)
    assert await intents(conn) == []
    await conn.execute("UPDATE file_intents SET created_at = now() - interval '1 day'")
    await housekeeping(client)
    assert await client.app[FILES].exists(key)


async def test_the_file_of_a_crash_before_its_row_is_deleted_once_old(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    files: FileStore = client.app[FILES]
    for key in ("uploads/old.pdf", "uploads/recent.pdf"):
        await files.put_bytes(key, b"%PDF-1.7 orphan", "application/pdf")
        await file_intents.add(conn, storage_keys=[key])
    await conn.execute(
        "UPDATE file_intents SET created_at = now() - interval '1 hour'"
        " WHERE storage_key = 'uploads/old.pdf'"
    )
    await housekeeping(client)
    assert not await files.exists("uploads/old.pdf")
    assert await files.exists("uploads/recent.pdf")  # may still be an upload in the making
    assert await intents(conn) == ["uploads/recent.pdf"]


@pytest.mark.parametrize("sweeping", [None, True])
async def test_an_upload_whose_intent_a_sweeper_took_is_refused(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    tmp_path: Path,
    sweeping: bool | None,
) -> None:
    """No intent (swept and gone) or one being swept: the file is going, the row must not come."""
    await make_token("all")
    if sweeping:
        await file_intents.add(conn, storage_keys=["uploads/swept.pdf"], sweeping=True)
    spooled = SpooledFile(
        path=tmp_path / "c.pdf",
        size=10,
        sha256="0" * 64,
        head=b"%PDF-1.7",
        client_filename="c.pdf",
        declared_content_type="application/pdf",
    )
    kind = FileKind(mime_type="application/pdf", extension="pdf")
    with pytest.raises(errors.ServiceUnavailable):
        await uploads.record_upload(
            client.app[POOL],
            settings=client.app[SETTINGS],
            institution_id=await institution_id(conn),
            spooled=spooled,
            kind=kind,
            storage_key="uploads/swept.pdf",
            field="file",
        )
    assert await conn.fetchval("SELECT count(*) FROM uploads") == 0


class Crash(BaseException):
    """The process dying mid-sweep."""


class CrashingDeletes(LocalFileStore):
    async def delete(self, key: str) -> None:
        raise Crash


async def test_a_sweep_killed_before_its_deletes_leaves_them_to_the_next(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    files: LocalFileStore = client.app[FILES]
    file_id = await upload(client, await make_token("all"))
    expired = await conn.fetchval(
        "UPDATE uploads SET expires_at = now() - interval '1 s' WHERE uuid = $1::uuid"
        " RETURNING storage_key",
        file_id,
    )
    await files.put_bytes("uploads/orphan.pdf", b"%PDF-1.7", "application/pdf")
    await file_intents.add(conn, storage_keys=["uploads/orphan.pdf"])
    crashing, pool = CrashingDeletes(files.root), client.app[POOL]
    with pytest.raises(Crash):
        await uploads.sweep_expired(pool, crashing)
    with pytest.raises(Crash):
        await uploads.sweep_file_intents(pool, crashing, older_than_s=0)
    assert await conn.fetchval("SELECT count(*) FROM uploads") == 0
    assert sorted(await intents(conn)) == sorted([expired, "uploads/orphan.pdf"])
    # the next sweep, once the grace time is over (0 here), finishes both
    assert await uploads.sweep_file_intents(pool, files, older_than_s=0) == 2
    assert await intents(conn) == []
    assert not await files.exists(expired) and not await files.exists("uploads/orphan.pdf")


class FailingDeletes(LocalFileStore):
    async def delete(self, key: str) -> None:
        raise StorageError(f"Local storage: cannot delete {key!r}: Input/output error")


async def test_a_failed_delete_is_tried_again_later(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    # fresh intents and a grace of 0: the app's own housekeeping (900 s grace) leaves them be
    files: LocalFileStore = client.app[FILES]
    await files.put_bytes("uploads/stuck.pdf", b"%PDF-1.7", "application/pdf")
    await file_intents.add(conn, storage_keys=["uploads/stuck.pdf"])
    failing = FailingDeletes(files.root)
    assert await uploads.sweep_file_intents(client.app[POOL], failing, older_than_s=0) == 1
    assert await intents(conn) == ["uploads/stuck.pdf"]  # back, to be tried again
    assert await uploads.sweep_file_intents(client.app[POOL], files, older_than_s=0) == 1
    assert await intents(conn) == []
    assert not await files.exists("uploads/stuck.pdf")
