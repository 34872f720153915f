"""Directories of one process's own for the files it creates, and where they land on disk.

Every certificate creates a file (its verified PDF, written by a render process) and most an
``.eml`` file. Without a journal, ext4 looks at every inode of a block group freed in the last
minute (up to six while the inode table is dirty) before it reuses one, an inode table lookup
each, and it puts a file's inode in its directory's group. So a directory next to others'
churn (under /tmp, just after something there deleted thousands of files; or where the last
run of this service, now deleted, kept its files) paid 0.3-0.8 ms of kernel time per file
created here, against 0.03 ms in a group of its own: up to a tenth of a certificate's whole
render. Hence: such files are created in a directory of a random name, made for this process
under a "top directory" (``chattr +T``), which ext4's Orlov allocator spreads to a group of
few directories picked from a random start, and then renamed under their names (the inode,
and so its group, stays). Elsewhere (another file system, no permission) only the attribute
is missing, and nothing else changes.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# linux/fs.h, as encoded on x86-64 and arm64 (elsewhere the request fails, and is ignored); the
# kernel reads and writes an int, whatever size the request's encoding says
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def make_top_directory(path: Path) -> bool:
    """Make ``path`` (and its parents) if missing, marked a top directory where the file
    system allows it (its other attributes kept); whether it is marked. Never raises: a
    directory that cannot be made fails where it is used, as before."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not sys.platform.startswith("linux"):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        log.debug("%s not made: %s", path, exc)
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    except OSError as exc:  # not ext2/3/4, or not ours to change
        log.debug("%s not marked a top directory: %s", path, exc)
        return False
    finally:
        os.close(fd)
    return True


def attributes(path: Path) -> int:
    """The file system attributes of a directory (``lsattr``'s); 0 where there are none."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return flags[0]


def is_top_directory(path: Path) -> bool:
    return bool(attributes(path) & FS_TOPDIR_FL)


def sweep_directories(parent: Path, suffix: str, *, own: str, older_than_s: float) -> int:
    """The directories under ``parent``: their files ending in ``suffix`` untouched for
    ``older_than_s`` (left by a process killed while it wrote them), and those of other
    processes, then empty, untouched as long. The files removed. Directories and files
    vanishing meanwhile (another process sweeping) are passed over; symbolic links are
    neither followed nor removed. A live process whose directory goes (idle that long) makes
    it again with its next file (``make_temp_file``)."""
    cutoff = time.time() - older_than_s
    directories = [entry for entry in _entries(parent) if entry.is_dir(follow_symlinks=False)]
    idle = [  # before removing files touches them
        entry.path for entry in directories if entry.name != own and _modified(entry) < cutoff
    ]
    removed = 0
    for directory in directories:
        for entry in _entries(Path(directory.path)):
            if entry.name.endswith(suffix) and _modified(entry) < cutoff:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    for path in idle:
        with contextlib.suppress(OSError):
            os.rmdir(path)  # fails while files are left in it
    return removed


def make_temp_file(directory: Path, *, prefix: str = "tmp", suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in a directory of a process's own, made again if it was swept
    away (idle) meanwhile."""
    for _ in range(3):
        try:
            return tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _modified(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return time.time()  # gone, or unreadable: not idle
