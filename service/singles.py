"""One certificate at a time: the single upload and the retry of a failed certificate."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import asyncpg

from service import errors, jobs
from service.bulk import certificate_record
from service.data import DATABASE_ERRORS
from service.data import batches as batch_data
from service.data import certificates as certificate_data
from service.data import uploads as upload_data
from service.webhooks import events

NOT_FAILED = "Only failed vault certificates can be retried"


async def retry(
    pool: asyncpg.Pool, *, institution_id: int, certificate_uuid: uuid.UUID, raw_id: str
) -> None:
    """``failed`` → ``processing`` and a new job, in one transaction; 422 from other states."""
    async with pool.acquire() as conn, conn.transaction():
        row = await certificate_data.mark_retried(
            conn, institution_id=institution_id, certificate_uuid=certificate_uuid
        )
        if row is None:
            exists = await certificate_data.find_certificate(
                conn, institution_id=institution_id, certificate_uuid=certificate_uuid
            )
            if exists is None:
                raise errors.NotFound(raw_id)
            raise errors.Unprocessable(NOT_FAILED)
        if row["batch_id"] is not None:
            await batch_data.count_outcome(conn, batch_id=row["batch_id"], failed=-1)
        await jobs.enqueue_processing(conn, certificate_ids=[row["id"]])
        await events.emit_certificate(conn, certificate_id=row["id"], event=events.RETRIED)


async def create_single(
    pool: asyncpg.Pool, *, institution_id: int, entry: dict[str, Any], upload_id: uuid.UUID
) -> uuid.UUID:
    """A certificate from an upload just stored, through the same pipeline as bulk entries.

    If it cannot be created, the upload (whose file_id nobody was given) is expired at once.
    """
    try:
        return await _create_single(
            pool, institution_id=institution_id, entry=entry, upload_id=upload_id
        )
    except Exception:
        with contextlib.suppress(*DATABASE_ERRORS):
            async with pool.acquire() as conn:
                await upload_data.expire_upload(
                    conn, institution_id=institution_id, upload_id=upload_id
                )
        raise


async def _create_single(
    pool: asyncpg.Pool, *, institution_id: int, entry: dict[str, Any], upload_id: uuid.UUID
) -> uuid.UUID:
    async with pool.acquire() as conn, conn.transaction():
        (upload,) = await upload_data.take_uploads(
            conn, institution_id=institution_id, file_ids=[upload_id]
        )
        record = certificate_record(
            entry,
            upload,
            institution_id=institution_id,
            batch_id=None,
            entry_index=None,
            trigger_context="single_upload",
        )
        created = await certificate_data.insert_certificate(
            conn, record=record, status="processing"
        )
        await jobs.enqueue_processing(conn, certificate_ids=[created["id"]])
        await events.emit_certificate(conn, certificate_id=created["id"], event=events.CREATED)
    certificate_uuid: uuid.UUID = created["uuid"]
    return certificate_uuid
