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
import time
from pathlib import Path

log = logging.getLogger(__name__)

# linux/fs.h; the kernel reads and writes an int, whatever the request's encoded size says
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def make_top_directory(path: Path) -> bool:
    """Make ``path`` (and its parents) if missing, marked a top directory where the file
    system allows it; whether it is marked. Never raises: a directory that cannot be made
    fails where it is used, as before."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
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


def is_top_directory(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(flags[0] & FS_TOPDIR_FL)


def sweep_directories(parent: Path, pattern: str, *, own: str, older_than_s: float) -> int:
    """Under ``parent``: the files matching ``pattern`` (a glob below it, such as
    ``*/*.part``) untouched for ``older_than_s``, left by a process killed while it wrote
    them; then the empty directories of other processes untouched as long. The files removed.
    A live process whose directory goes (idle that long) makes it again with its next file."""
    cutoff = time.time() - older_than_s
    idle = _idle_directories(parent, own, cutoff)  # before removing files touches them
    removed = 0
    for path in parent.glob(pattern):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    for directory in idle:
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # fails while files are left in it
    return removed


def _idle_directories(parent: Path, own: str, cutoff: float) -> list[str]:
    idle = []
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if (
                    entry.name != own
                    and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    idle.append(entry.path)
    return idle
