"""A batch's small PDFs, several to a job (``service.chunks``): how they are queued, and that
each certificate of a chunk ends as it would in a job of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import jobs
from service.app import WEBHOOK_HTTP, create_app
from service.chunks import CertificateChunks, chunk_exhausted
from service.config import Settings
from service.cpupool import CpuPool
from service.data import certificates as certificate_data
from service.keys import POOL, SETTINGS
from service.pipeline import verified_pdf_key
from service.queue.tallies import write_tallies
from service.queue.types import Grouped, JobContext, PermanentFailure
from service.resources import CPU, FILES
from tests.conftest import TokenFactory, bearer
from tests.queue_helpers import wait_until
from tests.vault_helpers import (
    BULK_URL,
    entry,
    fake_uploads,
    institution_id,
    remove_stored_file,
    upload,
)

BIG = 2 * 1024 * 1024  # over the size that shares a job


def test_consecutive_certificates_share_a_directory_of_their_verified_pdfs() -> None:
    """A chunk's certificates (consecutive ids) are published into one directory (fsynced
    once), 1,024 certificates to a directory; the key depends on the certificate alone."""
    uuid = "0d3f0b7e-6c1a-4a8e-9a51-0c6b8f1e2d3a"
    directories = {verified_pdf_key(n, uuid).rpartition("/")[0] for n in range(1024, 2048)}
    assert directories == {"certificates/1"}
    assert verified_pdf_key(2048, uuid) == f"certificates/2/{uuid}.pdf"
    assert verified_pdf_key(7, uuid) == verified_pdf_key(7, uuid) == f"certificates/0/{uuid}.pdf"


async def submit(client: TestClient, token: str, file_ids: list[str]) -> int:
    entries = [entry(file_id, n) for n, file_id in enumerate(file_ids)]
    response = await client.post(BULK_URL, json={"entries": entries}, headers=bearer(token))
    assert response.status == 202, await response.text()
    batch_id: int = await client.app[POOL].fetchval("SELECT max(id) FROM batches")
    return batch_id


async def queued(conn: asyncpg.Connection) -> list[tuple[str, int | None, Any]]:
    rows = await conn.fetch("SELECT kind, ref_id, payload FROM jobs ORDER BY id")
    return [(r["kind"], r["ref_id"], r["payload"]) for r in rows]


async def certificate_ids(conn: asyncpg.Connection) -> list[int]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM certificates ORDER BY id")]


async def test_small_pdfs_share_jobs_sixteen_at_a_time_and_the_rest_go_alone(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    file_ids = await fake_uploads(conn, institution_id=await institution_id(conn), count=36)
    await conn.execute("UPDATE uploads SET size = $2 WHERE uuid = $1::uuid", file_ids[3], BIG)
    await conn.execute(
        "UPDATE uploads SET mime_type = 'image/png' WHERE uuid = $1::uuid", file_ids[20]
    )
    batch_id = await submit(client, token, file_ids)
    ids = await certificate_ids(conn)
    big, image = ids[3], ids[20]
    small = [id_ for id_ in ids if id_ not in (big, image)]
    assert await queued(conn) == [
        (jobs.PROCESS_CERTIFICATES, batch_id, {"ids": small[:16]}),
        (jobs.PROCESS_CERTIFICATES, batch_id, {"ids": small[16:32]}),
        (jobs.PROCESS_CERTIFICATES, batch_id, {"ids": small[32:]}),
        (jobs.PROCESS_CERTIFICATE, big, None),
        (jobs.PROCESS_CERTIFICATE, image, None),
    ]

    await conn.execute("DELETE FROM jobs")
    async with conn.transaction():
        await certificate_data.enqueue_batch(
            conn,
            batch_id=batch_id,
            kinds=(jobs.PROCESS_CERTIFICATES, jobs.PROCESS_CERTIFICATE),
            per_job=1,  # CERTIFICATES_PER_JOB=1: a job each
            shared_max_bytes=jobs.SHARED_JOB_MAX_BYTES,
        )
    assert await queued(conn) == [(jobs.PROCESS_CERTIFICATE, id_, None) for id_ in ids]


def chunks(client: TestClient, *, cpu: CpuPool | None = None) -> CertificateChunks:
    app = client.app
    deps = jobs.Deps(
        pool=app[POOL],
        files=app[FILES],
        cpu=cpu or app[CPU],
        settings=app[SETTINGS],
        http=app[WEBHOOK_HTTP],
    )
    return CertificateChunks(deps)


async def chunk_job(conn: asyncpg.Connection) -> JobContext:
    row = await conn.fetchrow(
        "SELECT id, kind, ref_id, payload FROM jobs WHERE kind = $1", jobs.PROCESS_CERTIFICATES
    )
    return JobContext(
        job_id=row["id"],
        kind=row["kind"],
        ref_id=row["ref_id"],
        payload=row["payload"],
        attempt=1,
        max_attempts=5,
        lease_token=1,
    )


async def run_chunk(client: TestClient, ctx: JobContext, **kwargs: Any) -> Grouped[Any] | None:
    """The job's handler, then its finalizer and tallies in a transaction (a flush of one)."""
    finalizer = await chunks(client, **kwargs).process(ctx)
    if finalizer is not None:
        assert isinstance(finalizer, Grouped)
        async with client.app[POOL].acquire() as conn, conn.transaction():
            tallies = await finalizer(conn) or ()
            await write_tallies(conn, [(ctx.job_id, tally) for tally in tallies], timeout_s=10)
    return finalizer


async def statuses(conn: asyncpg.Connection) -> list[tuple[str, str | None]]:
    rows = await conn.fetch("SELECT status, error FROM certificates ORDER BY id")
    return [(r["status"], r["error"]) for r in rows]


async def test_a_chunk_ends_each_certificate_as_its_own_job_would_and_runs_again_harmlessly(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """Three PDFs, one whose original is gone: two generated (an email each), one failed
    with its own error, the batch counted; a second run finds nothing to do."""
    token = await make_token("all")
    file_ids = [await upload(client, token) for _ in range(3)]
    await remove_stored_file(client, conn, file_ids[1])
    await submit(client, token, file_ids)
    ctx = await chunk_job(conn)

    assert await run_chunk(client, ctx) is not None
    missing = "The original file is missing from storage."
    assert await statuses(conn) == [("generated", None), ("failed", missing), ("generated", None)]
    batch = await conn.fetchrow(
        "SELECT status, processed_certificates, failed_certificates FROM batches"
    )
    assert tuple(batch) == ("partially_completed", 2, 1)
    pdfs = await conn.fetch(
        "SELECT id, uuid, verified_pdf_key FROM certificates WHERE status = 'generated'"
    )
    for row in pdfs:
        assert row["verified_pdf_key"] == f"certificates/{row['id'] >> 10:x}/{row['uuid']}.pdf"
        assert (await client.app[FILES].get_bytes(row["verified_pdf_key"])).startswith(b"%PDF")
    assert await conn.fetchval("SELECT count(*) FROM certificate_codes") == 2

    assert await run_chunk(client, ctx) is None
    assert await conn.fetchval("SELECT count(*) FROM email_outbox") == 2
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = $1", jobs.SEND_EMAIL) == 2


async def test_a_chunk_waiting_for_a_render_process_stays_pending_until_its_turn(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """The engine claims more chunks than the render processes take at once: those waiting
    are not marked processing (nor given reference ids) until a render process is near."""
    token = await make_token("all")
    await submit(client, token, [await upload(client, token) for _ in range(2)])
    ctx = await chunk_job(conn)
    places = client.app[CPU].slots
    taken = 0
    while not places.locked():
        await places.acquire()
        taken += 1
    waiting = asyncio.ensure_future(run_chunk(client, ctx))
    try:
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert await statuses(conn) == [("pending", None)] * 2
        assert await conn.fetchval("SELECT count(reference_id) FROM certificates") == 0
        places.release()
        taken -= 1
        assert await asyncio.wait_for(waiting, 60) is not None
        assert await statuses(conn) == [("generated", None)] * 2
    finally:
        waiting.cancel()
        for _ in range(taken):
            places.release()


async def test_a_chunk_whose_render_process_is_lost_gives_each_certificate_its_own_job(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """A failure a retry may fix (here the render processes are gone): nothing is generated
    or failed, and each certificate is queued again as a job of its own."""
    token = await make_token("all")
    await submit(client, token, [await upload(client, token) for _ in range(2)])
    ctx = await chunk_job(conn)
    closed = CpuPool(1)
    await closed.close()
    await conn.execute("DELETE FROM jobs")

    await run_chunk(client, ctx, cpu=closed)
    assert await statuses(conn) == [("processing", None)] * 2
    assert await queued(conn) == [
        (jobs.PROCESS_CERTIFICATE, id_, None) for id_ in await certificate_ids(conn)
    ]


async def test_a_chunk_out_of_attempts_gives_each_certificate_its_own_job(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    file_ids = await fake_uploads(conn, institution_id=await institution_id(conn), count=3)
    await submit(client, token, file_ids)
    ctx = await chunk_job(conn)
    await conn.execute("DELETE FROM jobs")
    async with conn.transaction():
        assert await chunk_exhausted(conn, ctx, "lease expired") is None
    assert await queued(conn) == [
        (jobs.PROCESS_CERTIFICATE, id_, None) for id_ in await certificate_ids(conn)
    ]


async def test_a_chunk_without_its_ids_fails_at_once(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    ctx = JobContext(
        job_id=1,
        kind=jobs.PROCESS_CERTIFICATES,
        ref_id=None,
        payload={"ids": ["1"]},
        attempt=1,
        max_attempts=5,
        lease_token=1,
    )
    with pytest.raises(PermanentFailure, match="list of certificate ids"):
        await chunks(client).process(ctx)
    async with conn.transaction():
        assert await chunk_exhausted(conn, ctx, "no ids") is None
    assert await queued(conn) == []


async def test_one_certificate_a_retry_may_fix_goes_on_alone_and_the_batch_ends_exact(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> None:
    """Through the engine: of a chunk of three, one's PDF cannot be published (a directory is
    in the way of its file): the other two are generated, it goes on as a job of its own and,
    the storage repaired, is generated too; the batch completes with exact counts, one email
    each."""
    token = await make_token("all")
    await submit(client, token, [await upload(client, token) for _ in range(3)])
    blocked_id, blocked_uuid = await conn.fetchrow(
        "SELECT id, uuid::text FROM certificates ORDER BY id OFFSET 1 LIMIT 1"
    )
    blocker = settings.data_dir / "files" / verified_pdf_key(blocked_id, blocked_uuid)
    blocker.mkdir(parents=True)  # a directory where its PDF goes

    workers = settings.with_overrides(workers=4, poll_interval_s=0.1, cpu_processes=1)
    await aiohttp_client(create_app(workers))
    await wait_until(lambda: _has_own_job(conn, blocked_id), timeout_s=60, every_s=0.02)
    assert [status for status, _ in await statuses(conn)] == [
        "generated",
        "processing",
        "generated",
    ]
    blocker.rmdir()
    await wait_until(lambda: _batch_is(conn, "completed"), timeout_s=60, every_s=0.1)
    batch = await conn.fetchrow("SELECT processed_certificates, failed_certificates FROM batches")
    assert tuple(batch) == (3, 0)
    assert await statuses(conn) == [("generated", None)] * 3
    await wait_until(lambda: _emails_written(conn, 3), timeout_s=60, every_s=0.1)
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind LIKE 'certificate%'") == 0


async def _has_own_job(conn: asyncpg.Connection, certificate_id: int) -> bool:
    kind = jobs.PROCESS_CERTIFICATE
    query = "SELECT count(*) FROM jobs WHERE kind = $1 AND ref_id = $2"
    return bool(await conn.fetchval(query, kind, certificate_id))


async def _batch_is(conn: asyncpg.Connection, status: str) -> bool:
    return bool(await conn.fetchval("SELECT status = $1 FROM batches", status))


async def _emails_written(conn: asyncpg.Connection, count: int) -> bool:
    sent = await conn.fetchval("SELECT count(*) FROM email_outbox WHERE status = 'sent'")
    return bool(sent == count)


async def test_a_chunk_claimed_past_its_last_attempt_hands_each_certificate_on(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its worker died during its last attempt: the engine's next claim runs the chunk's
    on_exhausted instead of it, and each certificate, a job of its own, is generated."""
    token = await make_token("all")
    await submit(client, token, [await upload(client, token) for _ in range(2)])
    await conn.execute("UPDATE jobs SET attempts = $1", settings.job_max_attempts)
    workers = settings.with_overrides(workers=4, poll_interval_s=0.1, cpu_processes=1)
    await aiohttp_client(create_app(workers))
    await wait_until(lambda: _batch_is(conn, "completed"), timeout_s=60, every_s=0.1)
    assert await statuses(conn) == [("generated", None)] * 2
    assert "one job each for its certificates" in caplog.text
    await wait_until(lambda: _emails_written(conn, 2), timeout_s=60, every_s=0.1)
