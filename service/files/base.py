"""The ``FileStore`` interface shared by every storage backend, and its two errors."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Protocol

DEFAULT_CHUNK_BYTES = 1 << 16
MAX_KEY_CHARS = 512
_KEY_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def validate_key(key: str) -> None:
    """Allow only plain relative paths of safe characters, the same on every backend, so a key
    can never leave the local root or mean different objects in different stores."""
    if (
        len(key) > MAX_KEY_CHARS
        or not _KEY_RE.fullmatch(key)
        or any(segment in (".", "..") for segment in key.split("/"))
    ):
        raise ValueError(f"Invalid storage key {key!r}.")


class FileMissing(Exception):
    """No file is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"No stored file under key {key!r}.")
        self.key = key


class StorageError(Exception):
    """The storage itself failed (disk full, permission denied, S3 error); a retry may succeed."""


PutItem = tuple[str, bytes, str]  # key, data, content type


class FileStore(Protocol):
    """Keys are relative, slash-separated names chosen by the service, never by clients."""

    async def put_file(self, key: str, path: Path) -> None:
        """Store a copy of the local file ``path`` under ``key``, replacing any previous file."""

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_many(self, items: Sequence[PutItem]) -> None:
        """Store several (key, data, content type) at once; each one alone is atomic."""

    def open_stream(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_BYTES
    ) -> AsyncGenerator[bytes, None]:
        """Yield the file in chunks; ``FileMissing`` comes from the first iteration.

        Close the iterator (``contextlib.aclosing``) when stopping early, so the file or the
        HTTP connection is released at once rather than when garbage-collected.
        """

    async def get_bytes(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove the file; a missing key is not an error."""

    async def exists(self, key: str) -> bool: ...
