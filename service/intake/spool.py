"""Stream one multipart part to a private temporary file, enforcing the size limit as it arrives.

aiohttp does not apply ``client_max_size`` to streamed multipart, so the limit is counted here:
at most the limit plus one network chunk is ever read, and nothing past the limit is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import BodyPartReader, hdrs

from service.errors import FieldValidationError, ServiceUnavailable
from service.intake.names import sanitize_filename

HEAD_BYTES = 8192
READ_CHUNK_BYTES = 1 << 16
WRITE_BATCH_BYTES = 1 << 20
MAX_CONTENT_TYPE_CHARS = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class SpooledFile:
    path: Path
    size: int
    sha256: str
    head: bytes
    client_filename: str
    declared_content_type: str | None


async def spool_part(
    part: BodyPartReader, *, directory: Path, limit_bytes: int, field: str
) -> SpooledFile:
    """Write the part to a new 0600 file in ``directory``; the caller owns (and deletes) it.

    Raises ``FieldValidationError`` on ``field`` when the part is empty or over the limit,
    ``ServiceUnavailable`` when the disk fails. On any error or cancellation the file is gone.
    """
    file, path = await asyncio.to_thread(_create_temp, directory)
    try:
        size, sha256, head = await _copy_part(part, file, limit_bytes, field)
        await asyncio.to_thread(_close, file)
    except BaseException:
        # to_thread hands the work to the executor at once, so a second cancellation cannot
        # stop the removal.
        await asyncio.to_thread(_discard, file, path)
        raise
    return SpooledFile(
        path=path,
        size=size,
        sha256=sha256,
        head=head,
        client_filename=sanitize_filename(part.filename),
        declared_content_type=_declared_type(part),
    )


async def _copy_part(
    part: BodyPartReader, file: BinaryIO, limit_bytes: int, field: str
) -> tuple[int, str, bytes]:
    digest = hashlib.sha256()
    batch = bytearray()
    size = 0
    head = b""
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit_bytes:
            raise FieldValidationError.single(field, too_large_message(field, limit_bytes))
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
        batch += chunk
        if len(batch) >= WRITE_BATCH_BYTES:
            await asyncio.to_thread(_write, file, digest, bytes(batch))
            batch.clear()
    if size == 0:
        raise FieldValidationError.single(field, f"The {_attribute(field)} must not be empty.")
    await asyncio.to_thread(_write, file, digest, bytes(batch))
    return size, digest.hexdigest(), head


def too_large_message(field: str, limit_bytes: int) -> str:
    """Laravel's wording for ``max:<kilobytes>``."""
    if limit_bytes % 1024:
        return f"The {_attribute(field)} must not be greater than {limit_bytes} bytes."
    return f"The {_attribute(field)} must not be greater than {limit_bytes // 1024} kilobytes."


def _attribute(field: str) -> str:
    return field.replace("_", " ")


def _declared_type(part: BodyPartReader) -> str | None:
    value = part.headers.get(hdrs.CONTENT_TYPE, "")
    declared = value.split(";")[0].strip().lower()[:MAX_CONTENT_TYPE_CHARS]
    return declared or None


def _create_temp(directory: Path) -> tuple[BinaryIO, Path]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
    except OSError as exc:
        raise _disk_failure() from exc
    return os.fdopen(fd, "wb"), Path(name)


def _write(file: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    # Hashing here, off the event loop: hashlib releases the GIL for large buffers.
    digest.update(data)
    try:
        file.write(data)
    except OSError as exc:
        raise _disk_failure() from exc


def _close(file: BinaryIO) -> None:
    try:
        file.close()
    except OSError as exc:
        raise _disk_failure() from exc


def _discard(file: BinaryIO, path: Path) -> None:
    # Best effort: the original exception matters more than a failed clean-up.
    with contextlib.suppress(OSError):
        file.close()
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _disk_failure() -> ServiceUnavailable:
    return ServiceUnavailable("The upload could not be stored. Please retry shortly.")
