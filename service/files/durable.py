"""Durable file operations on a POSIX file system: fsync before rename, fsync the directory
after, and the parents of directories made on the way; OSErrors as the stores' errors."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from service.files.base import FileMissing, StorageError
from service.files.placement import make_temp_file

COPY_CHUNK_BYTES = 1 << 20

T = TypeVar("T")
Fill = Callable[[BinaryIO], object]


def storage_call(key: str, action: str, fn: Callable[[], T]) -> T:
    with storage_errors(key, action):
        return fn()


@contextlib.contextmanager
def storage_errors(key: str, action: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        if action == "read":
            raise FileMissing(key) from exc
        raise StorageError(f"Local storage: cannot {action} {key!r}: {_reason(exc)}") from exc
    except OSError as exc:
        raise StorageError(f"Local storage: cannot {action} {key!r}: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    # strerror carries no path: messages may reach clients in a certificate's failure reason.
    return exc.strerror or type(exc).__name__


def copy_from(source: Path, out: BinaryIO) -> None:
    with source.open("rb") as src:
        shutil.copyfileobj(src, out, COPY_CHUNK_BYTES)


def write_files_atomically(
    directory: Path,
    files: Sequence[tuple[str, bytes]],
    *,
    prefix: str,
    suffix: str,
    scratch: Path | None = None,
    parent_too: bool = False,
) -> list[Path]:
    """Outside a store (the ``.eml`` outbox): each (name, data) to a temp file (a sibling, or
    in ``scratch`` on the same file system), fsync, rename; then the directory fsynced once
    for them all, and the parents of directories made on the way (or its own parent anyway,
    with ``parent_too``). The paths written, in order."""
    changed = make_directory(directory)
    if parent_too and directory.parent not in changed:
        changed.append(directory.parent)
    targets = [directory / name for name, _ in files]
    for target, (_, data) in zip(targets, files, strict=True):
        replace_file(target, writer(data), prefix=prefix, suffix=suffix, scratch=scratch)
    for each in (directory, *changed):
        fsync_directory(each)
    if scratch is not None:
        # without a journal, the temp names could otherwise outlive a crash beside the files
        fsync_directory(scratch)
    return targets


def writer(data: bytes) -> Fill:
    return lambda out: out.write(data)


def move_durably(source: str, target: str) -> list[Path]:
    """Fsync ``source`` and rename it to ``target`` (its directory made if needed: those
    whose entries changed are returned, to fsync); ``source`` is gone afterwards either way."""
    try:
        fsync(source, os.O_RDONLY)
        try:
            os.replace(source, target)
        except FileNotFoundError:  # the directory is not there (yet): no stat before each rename
            created = make_directory(Path(target).parent)
            os.replace(source, target)
            return created
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(source)
        raise
    return []


def make_directory(directory: Path) -> list[Path]:
    """Create ``directory`` if needed; the directories whose entries changed (to fsync)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    if missing:
        missing[0].mkdir(parents=True, exist_ok=True)
    return [path.parent for path in missing]


def replace_file(
    target: Path,
    fill: Fill,
    *,
    prefix: str = ".tmp-",
    suffix: str = ".part",
    scratch: Path | None = None,
) -> None:
    """``target`` replaced atomically by what ``fill`` writes, fsynced: written to a temp file
    in ``scratch`` (a directory of the process's own on the same file system, made if
    missing), or beside it."""
    if scratch is None:
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    else:
        fd, temp_name = make_temp_file(scratch, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def fsync_directory(directory: Path) -> None:
    fsync(directory, os.O_RDONLY | os.O_DIRECTORY)


def fsync(path: str | Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
