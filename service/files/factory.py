"""Open the configured file store from a URL: ``file:///abs/path``, a plain path, or ``s3://``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.files.base import FileStore
from service.files.local import LocalFileStore
from service.files.s3 import open_s3_store


@contextlib.asynccontextmanager
async def open_file_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str = "us-east-1",
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
) -> AsyncIterator[FileStore]:
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(
                f"File store URL {url!r} names no bucket (expected s3://bucket/prefix)."
            )
        async with open_s3_store(
            bucket=parts.netloc,
            prefix=unquote(parts.path),
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key=s3_access_key,
            secret_key=s3_secret_key,
        ) as store:
            yield store
    else:
        local = LocalFileStore(local_root(url))
        await local.place_pending()
        yield local


def local_root(url: str) -> Path:
    """The directory of a ``file://`` URL or plain path; anything else is a ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "":
        if not url:
            raise ValueError("File store URL is empty (expected file:///path or s3://bucket).")
        return Path(url)
    if parts.scheme != "file":
        raise ValueError(
            f"Unsupported file store URL scheme {parts.scheme!r} in {url!r}; "
            "use file:///absolute/path, a plain path, or s3://bucket/prefix."
        )
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ValueError(f"File store URL {url!r} must be file:///absolute/path.")
    return Path(unquote(parts.path))
