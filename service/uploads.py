"""Temporary uploads: validate a spooled file, store it, record its file_id; sweep expired ones."""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from service import errors
from service.config import Settings
from service.cpupool import CpuPool
from service.data import DATABASE_ERRORS
from service.data import file_intents as intents
from service.data import uploads as upload_data
from service.files.base import FileStore, StorageError
from service.intake.inspect import FileKind, InvalidUpload, check_declared, inspect_file
from service.intake.names import ensure_extension
from service.intake.spool import SpooledFile

log = logging.getLogger(__name__)

SWEEP_BATCH = 200
INSPECT_TIMEOUT_S = 60.0
# An upload's file is written between its intent and its row; past this, the intent's file is
# an orphan. (Correctness does not hang on it: see record_upload.)
INTENT_GRACE_S = 900.0
STORE_FAILED = "The file could not be stored; please retry."


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredUpload:
    file_uuid: uuid.UUID
    file_id: str
    file_name: str
    mime_type: str
    size: int
    sha256: str
    storage_key: str


async def inspect_spooled(cpu: CpuPool, spooled: SpooledFile, *, field: str) -> FileKind:
    """Decide the type by the bytes and open the file fully, in the CPU pool."""
    try:
        kind = await cpu.run_limited(INSPECT_TIMEOUT_S, inspect_file, str(spooled.path))
    except InvalidUpload as exc:
        # the messages say "The file ...": name the form's own field, as Laravel would
        message = exc.message.replace("The file ", f"The {field.replace('_', ' ')} ", 1)
        raise errors.FieldValidationError.single(field, message) from None
    except TimeoutError:
        raise errors.FieldValidationError.single(
            field, "The file could not be checked in time; it may be damaged or too complex."
        ) from None
    except BrokenProcessPool:
        log.error("the upload checking process stopped while reading %s", spooled.path.name)
        raise errors.ServiceUnavailable("The file could not be checked; please retry.") from None
    problem = check_declared(kind, spooled.client_filename, spooled.declared_content_type)
    if problem:
        raise errors.FieldValidationError.single(field, problem)
    return kind


def new_storage_key(prefix: str, extension: str) -> str:
    """Random and never derived from the client's file name."""
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{prefix}/{day}/{secrets.token_hex(16)}.{extension}"


async def put_spooled(files: FileStore, spooled: SpooledFile, key: str) -> None:
    try:
        await files.put_file(key, spooled.path)
    except StorageError as exc:
        log.error("storing upload failed: %s", exc)
        raise errors.ServiceUnavailable(STORE_FAILED) from None


async def record_upload(
    pool: asyncpg.Pool,
    *,
    settings: Settings,
    institution_id: int,
    spooled: SpooledFile,
    kind: FileKind,
    storage_key: str,
    field: str,
) -> StoredUpload:
    """Insert the upload row, refusing it when the institution's quota would be exceeded."""
    async with pool.acquire() as conn, conn.transaction():
        if not await intents.resolve(conn, storage_key=storage_key):
            log.error("the intent of upload %s was swept before its row", storage_key)
            raise errors.ServiceUnavailable(STORE_FAILED)
        used = await upload_data.lock_institution_usage(conn, institution_id=institution_id)
        if used + spooled.size > settings.upload_quota_bytes:
            raise errors.FieldValidationError.single(
                field,
                "The upload quota of your institution is exhausted: use or let expire the files"
                f" already uploaded ({used} of {settings.upload_quota_bytes} bytes in use).",
            )
        row = await upload_data.insert_upload(
            conn,
            institution_id=institution_id,
            storage_key=storage_key,
            file_name=ensure_extension(spooled.client_filename, kind.extension),
            mime_type=kind.mime_type,
            size=spooled.size,
            sha256=spooled.sha256,
            ttl_s=settings.upload_ttl_s,
        )
    return StoredUpload(
        file_uuid=row["uuid"],
        file_id=str(row["uuid"]),
        file_name=row["file_name"],
        mime_type=row["mime_type"],
        size=row["size"],
        sha256=row["sha256"],
        storage_key=storage_key,
    )


async def accept_upload(
    *,
    pool: asyncpg.Pool,
    files: FileStore,
    cpu: CpuPool,
    settings: Settings,
    institution_id: int,
    spooled: SpooledFile,
    field: str,
) -> StoredUpload:
    kind = await inspect_spooled(cpu, spooled, field=field)
    key = new_storage_key("uploads", kind.extension)
    async with pool.acquire() as conn:
        await intents.add(conn, storage_keys=[key])
    await put_spooled(files, spooled, key)
    try:
        return await record_upload(
            pool,
            settings=settings,
            institution_id=institution_id,
            spooled=spooled,
            kind=kind,
            storage_key=key,
            field=field,
        )
    except errors.ServiceError:
        # refused inside the transaction, so it rolled back: the file is nobody's
        with contextlib.suppress(StorageError, *DATABASE_ERRORS):
            await files.delete(key)
            async with pool.acquire() as conn:
                await intents.remove(conn, storage_keys=[key])
        raise
    # Anything else (a lost connection, say) may have come after the commit: the file is kept,
    # and if the row was not written its intent has housekeeping delete it.


async def sweep_expired(pool: asyncpg.Pool, files: FileStore) -> int:
    """Delete expired uploads, then their files; safe in several replicas (SKIP LOCKED).

    Rows go first, in a short transaction that leaves an intent for each file (so a crash
    before the file is gone leaves it to be swept); no transaction waits on storage.
    """
    swept = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await upload_data.claim_expired(conn, limit=SWEEP_BATCH)
            keys = [row["storage_key"] for row in rows]
            await upload_data.delete_uploads(conn, ids=[row["id"] for row in rows])
            await intents.add(conn, storage_keys=keys, sweeping=True)
        await _delete_files(pool, files, keys)
        swept += len(rows)
        if len(rows) < SWEEP_BATCH:
            return swept


async def sweep_file_intents(
    pool: asyncpg.Pool, files: FileStore, *, older_than_s: float = INTENT_GRACE_S
) -> int:
    """Delete the files of old intents (a crash between storing an upload and recording it, or
    between a sweep's commit and its delete), then the intents."""
    swept = 0
    while True:
        async with pool.acquire() as conn:
            keys = await intents.claim_stale(conn, older_than_s=older_than_s, limit=SWEEP_BATCH)
        await _delete_files(pool, files, keys)
        swept += len(keys)
        if len(keys) < SWEEP_BATCH:
            return swept


async def _delete_files(pool: asyncpg.Pool, files: FileStore, keys: list[str]) -> None:
    """Delete, then forget the intents of what is gone; a failed delete keeps its intent,
    which comes back after the grace time."""
    deleted = []
    for key in keys:
        try:
            await files.delete(key)
        except StorageError as exc:
            log.warning("could not delete a file, will retry: %s", exc)
        else:
            deleted.append(key)
    if deleted:
        async with pool.acquire() as conn:
            await intents.remove(conn, storage_keys=deleted)
