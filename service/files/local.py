"""Local-disk file store: atomic writes (temp file, fsync, rename), blocking I/O in threads.

Another process on this machine (a render process) may write a file for the store: it writes
it to the store's pending directory (``write_pending``), unsynced, and the store publishes it
under its key (``LocalFileStore.publish``: fsync, rename, fsync the directory, and the first
time its parents up to the root, since whoever created it may have died before). Only the
caller that publishes decides what a key holds: a render abandoned on its way leaves a pending
file, which housekeeping removes (``sweep_pending``), never a file under a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from service.files.base import (
    DEFAULT_CHUNK_BYTES,
    PutItem,
    StorageError,
    validate_key,
)
from service.files.durable import (
    Fill,
    copy_from,
    fsync_directory,
    make_directory,
    move_durably,
    replace_file,
    storage_call,
    storage_errors,
    writer,
)
from service.files.placement import make_temp_file, make_top_directory, sweep_directories

# Files written by other processes, until published under their key (no key the service makes
# starts with a dot: uploads/..., certificates/..., codes/...). Each store (each service
# process) has a directory of its own in it, of a random name, placed afresh on disk
# (``files.placement``): one file is created there per certificate.
PENDING_DIR = ".pending"
_PENDING_NAME_RE = re.compile(r"[A-Za-z0-9_-]+/tmp[A-Za-z0-9_]+\.part")
_SAFE_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        # this store's own directory under PENDING_DIR, made with its first file
        self.pending_dir = secrets.token_hex(8)
        # Directories whose entries, and their parents' up to the root, this store has fsynced:
        # whoever created a directory may have died before making it durable.
        self._durable_directories: set[Path] = set()

    def __repr__(self) -> str:
        return f"LocalFileStore(root={str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root / key

    async def publish(self, pending: str, key: str) -> None:
        """Make a file written by ``write_pending`` durable under ``key``, replacing any
        previous file; the pending file is gone afterwards, published or not."""
        (error,) = await self.publish_many([(pending, key)])
        if error is not None:
            raise error

    async def publish_many(self, files: Sequence[tuple[str, str]]) -> list[StorageError | None]:
        """``publish`` for each (pending name, key), in one thread hop, each directory fsynced
        once for them all; a file that could not be published has its error in its place."""
        for _, key in files:
            validate_key(key)
        pending_root = os.path.join(self.root, PENDING_DIR)
        # strings, not Paths: pathlib was a fifth of this thread's time
        moves = [
            (os.path.join(pending_root, _pending_name(pending)), os.path.join(self.root, key))
            for pending, key in files
        ]
        keys = [key for _, key in files]
        return await asyncio.to_thread(self._publish_many, moves, keys)

    def _publish_many(
        self, moves: Sequence[tuple[str, str]], keys: Sequence[str]
    ) -> list[StorageError | None]:
        errors: list[StorageError | None] = []
        placed: dict[str, list[int]] = {}  # a directory: the files moved into it
        created: dict[str, list[Path]] = {}  # a directory: those made for it whose entries changed
        for (source, target), key in zip(moves, keys, strict=True):
            try:
                with storage_errors(key, "write"):
                    made = move_durably(source, target)
            except StorageError as exc:
                errors.append(exc)
                continue
            errors.append(None)
            directory = os.path.dirname(target)
            placed.setdefault(directory, []).append(len(errors) - 1)
            created.setdefault(directory, []).extend(made)
        for directory, indexes in placed.items():
            try:
                with storage_errors(keys[indexes[0]], "write"):
                    self._sync_directory(Path(directory), created[directory])
            except StorageError as exc:
                errors = [exc if i in indexes else error for i, error in enumerate(errors)]
        return errors

    def _sync_directory(self, directory: Path, created: Sequence[Path] = ()) -> None:
        """Fsync a directory whose entries changed, and the parents of the directories just
        created for it; the first time, every directory up to the root too."""
        to_sync = dict.fromkeys((directory, *created))
        if directory not in self._durable_directories:
            above = directory
            while above not in (self.root, above.parent):
                above = above.parent
                to_sync[above] = None
        for each in to_sync:
            fsync_directory(each)
        self._durable_directories.add(directory)

    async def place_pending(self) -> None:
        """Before the first render: the pending directory made a top directory, for this
        store's own to be placed afresh (``files.placement``)."""
        await asyncio.to_thread(make_top_directory, self.root / PENDING_DIR)

    async def sweep_pending(self, older_than_s: float) -> int:
        """Remove pending files no one published (their render was abandoned or killed), and
        the directories of stores gone."""
        return await asyncio.to_thread(
            sweep_directories,
            self.root / PENDING_DIR,
            ".part",
            own=self.pending_dir,
            older_than_s=older_than_s,
        )

    async def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        await asyncio.to_thread(self._write_all, [(target, key, lambda out: copy_from(path, out))])

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self.put_many([(key, data, content_type)])

    async def put_many(self, items: Sequence[PutItem]) -> None:
        """One thread hop for all; siblings share one directory fsync (a certificate's files)."""
        targets = [(self._path(key), key, writer(data)) for key, data, _ in items]
        await asyncio.to_thread(self._write_all, targets)

    def _write_all(self, targets: Sequence[tuple[Path, str, Fill]]) -> None:
        # each directory fsynced once, after its files, with a key to name in errors (never a
        # local path) and the directories created for it
        directories: dict[Path, tuple[str, list[Path]]] = {}
        for target, key, fill in targets:
            with storage_errors(key, "write"):
                if target.parent not in directories:
                    directories[target.parent] = (key, make_directory(target.parent))
                replace_file(target, fill)
        for directory, (key, created) in directories.items():
            with storage_errors(key, "write"):
                self._sync_directory(directory, created)

    async def open_stream(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_BYTES
    ) -> AsyncGenerator[bytes, None]:
        path = self._path(key)
        file = await asyncio.to_thread(storage_call, key, "read", lambda: path.open("rb"))
        try:
            while chunk := await asyncio.to_thread(
                storage_call, key, "read", lambda: file.read(chunk_size)
            ):
                yield chunk
        finally:
            file.close()

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        return await asyncio.to_thread(storage_call, key, "read", path.read_bytes)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(storage_call, key, "delete", lambda: path.unlink(missing_ok=True))

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        return await asyncio.to_thread(storage_call, key, "check", path.is_file)


def read_local(root: Path, key: str) -> bytes:
    """The file under ``key`` in the local store at ``root``, for another process."""
    validate_key(key)
    return storage_call(key, "read", (root / key).read_bytes)


def write_pending(root: Path, pending_dir: str, key: str, data: bytes) -> str:
    """Write ``data`` as a pending file of the store at ``root``, in its own ``pending_dir``,
    unsynced (the process that publishes it fsyncs it; a render process waiting on the disk
    would leave a core idle); its name, for ``LocalFileStore.publish``. ``key`` names it in
    errors."""
    validate_key(key)
    if not _SAFE_SEGMENT_RE.fullmatch(pending_dir):
        raise ValueError(f"Invalid pending directory {pending_dir!r}.")
    directory = root / PENDING_DIR / pending_dir
    with storage_errors(key, "write"):
        fd, path = make_temp_file(directory, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
    return f"{pending_dir}/{os.path.basename(path)}"


def _pending_name(name: str) -> str:
    if not _PENDING_NAME_RE.fullmatch(name):
        raise ValueError(f"Invalid pending file name {name!r}.")
    return name
