"""S3 (or S3-compatible) file store on aiobotocore; the client lives in an async context manager."""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from service.files.base import (
    DEFAULT_CHUNK_BYTES,
    FileMissing,
    PutItem,
    StorageError,
    validate_key,
)

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60


class S3FileStore:
    """Objects live at ``<prefix>/<key>`` in one bucket; the caller owns the client."""

    def __init__(self, client: Any, *, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"S3FileStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put_file(self, key: str, path: Path) -> None:
        object_key = self._key(key)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        file = await asyncio.to_thread(_open_for_upload, path, key)
        try:
            with _s3_errors(key, "write"):
                # A file object, not bytes: aiohttp reads it in its executor as it sends.
                await self._client.put_object(
                    Bucket=self.bucket, Key=object_key, Body=file, ContentType=content_type
                )
        finally:
            file.close()

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with _s3_errors(key, "write"):
            await self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
            )

    async def put_many(self, items: Sequence[PutItem]) -> None:
        # a TaskGroup cancels the other PUTs when one fails: none lands after the retry's
        try:
            async with asyncio.TaskGroup() as group:
                for item in items:
                    group.create_task(self.put_bytes(*item))
        except* StorageError as failures:
            raise failures.exceptions[0] from None

    async def open_stream(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_BYTES
    ) -> AsyncGenerator[bytes, None]:
        with _s3_errors(key, "read"):
            response = await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(chunk_size):
                    yield chunk

    async def get_bytes(self, key: str) -> bytes:
        with _s3_errors(key, "read"):
            response = await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def delete(self, key: str) -> None:
        with _s3_errors(key, "delete"):
            await self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    async def exists(self, key: str) -> bool:
        try:
            with _s3_errors(key, "read"):
                await self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except FileMissing:
            return False
        return True


@contextlib.asynccontextmanager
async def open_s3_store(
    *,
    bucket: str,
    prefix: str = "",
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key: str | None = None,
    secret_key: str | None = None,
) -> AsyncIterator[S3FileStore]:
    """Open one aiobotocore client for the store's lifetime (credentials: given, else botocore's
    default chain)."""
    config = AioConfig(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 3, "mode": "standard"},
        # S3-compatible servers (MinIO, moto, Ceph) rarely resolve bucket subdomains.
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    ) as client:
        yield S3FileStore(client, bucket=bucket, prefix=prefix)


def _open_for_upload(path: Path, key: str) -> Any:
    try:
        return path.open("rb")
    except OSError as exc:
        raise StorageError(f"S3 storage: cannot read the file for {key!r}: {exc.strerror}") from exc


@contextlib.contextmanager
def _s3_errors(key: str, action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        if action == "read" and code in _MISSING_CODES:
            raise FileMissing(key) from exc
        detail = error.get("Message") or code
        raise StorageError(f"S3 storage: cannot {action} {key!r}: {code} ({detail})") from exc
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        raise StorageError(f"S3 storage: cannot {action} {key!r}: {type(exc).__name__}") from exc
