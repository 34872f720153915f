"""Files created in a directory of the process's own, placed afresh on disk (files.placement):
the render processes' pending PDFs and the .eml outbox's temp files."""

from __future__ import annotations

import array
import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from service.emails import SCRATCH_DIR, STALE_SCRATCH_S, EmlWriter
from service.files import placement
from service.files.local import PENDING_DIR, LocalFileStore, write_pending
from service.files.placement import (
    FS_IOC_SETFLAGS,
    attributes,
    is_top_directory,
    make_top_directory,
    sweep_directories,
)

HOURS_AGO = time.time() - 7200
FS_NODUMP_FL = 0x00000040  # chattr +d, any other attribute


def file_system_type(path: Path) -> str:
    """The type of the file system ``path`` is on (the longest mount point above it)."""
    mount_point, kind = "", ""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, fs_type, *_ = line.split()
        inside = f"{path}/".startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(mount_point):
            mount_point, kind = mount, fs_type
    return kind


def set_attributes(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, array.array("i", [flags]), True)
    finally:
        os.close(fd)


def age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, (HOURS_AGO, HOURS_AGO))


def test_a_top_directory_is_made_with_its_parents_and_marked_where_the_disk_allows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a" / "b"
    marked = make_top_directory(path)
    assert path.is_dir()
    assert marked == is_top_directory(path)
    assert not is_top_directory(tmp_path / "a")
    if file_system_type(tmp_path) in {"ext2", "ext3", "ext4"}:
        assert marked
    assert make_top_directory(path) == marked  # again: nothing changes
    if marked:  # the directory's other attributes are kept
        other = tmp_path / "other"
        other.mkdir()
        set_attributes(other, FS_NODUMP_FL)
        assert make_top_directory(other)
        assert attributes(other) & FS_NODUMP_FL and is_top_directory(other)
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    assert make_top_directory(blocked / "below") is False  # never raises


def test_sweeping_removes_stale_files_and_the_idle_directories_of_others(
    tmp_path: Path,
) -> None:
    names = ("own", "dead", "idle", "busy", "fresh")
    own, dead, idle, busy, fresh = (tmp_path / name for name in names)
    for directory in (own, dead, idle, busy, fresh):
        directory.mkdir()
    (own / "stale.part").write_bytes(b"")
    (dead / "left.part").write_bytes(b"")  # by a process killed while it wrote
    (idle / "left.part").write_bytes(b"")
    (idle / "other.txt").write_bytes(b"")  # not the pattern's: stays, and so does its directory
    (busy / "new.part").write_bytes(b"")
    age(own / "stale.part", dead / "left.part", idle / "left.part", own, dead, idle, busy)
    assert sweep_directories(tmp_path, ".part", own="own", older_than_s=3600) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "fresh", "idle", "own"]
    (idle / "other.txt").unlink()
    age(idle)
    assert sweep_directories(tmp_path, ".part", own="own", older_than_s=3600) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "fresh", "own"]
    assert [p.name for p in busy.iterdir()] == ["new.part"]
    assert sweep_directories(tmp_path / "missing", ".part", own="own", older_than_s=1) == 0


def test_sweeping_passes_over_what_vanishes_and_never_follows_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.part").write_bytes(b"")
    parent = tmp_path / "parent"
    for name in ("gone", "dead"):
        (parent / name).mkdir(parents=True)
        (parent / name / "left.part").write_bytes(b"")
        age(parent / name / "left.part", parent / name)
    (parent / "link").symlink_to(outside, target_is_directory=True)
    age(outside / "kept.part", outside)
    listed = placement._entries

    def another_sweeper_first(directory: Path) -> list[os.DirEntry[str]]:
        found = listed(directory)
        if directory == parent:  # listed, then removed by another process's sweep
            for path in (parent / "gone" / "left.part", parent / "gone"):
                os.remove(path) if path.is_file() else os.rmdir(path)
        return found

    monkeypatch.setattr(placement, "_entries", another_sweeper_first)
    assert sweep_directories(parent, ".part", own="own", older_than_s=3600) == 1
    assert [p.name for p in parent.iterdir()] == ["link"]
    assert (outside / "kept.part").exists()


async def test_each_store_writes_pending_files_in_a_directory_of_its_own(tmp_path: Path) -> None:
    first, second = LocalFileStore(tmp_path), LocalFileStore(tmp_path)
    assert first.pending_dir != second.pending_dir
    await first.place_pending()
    assert is_top_directory(tmp_path / PENDING_DIR) == make_top_directory(tmp_path / "probe")
    key = "certificates/ab/a.pdf"
    pending = write_pending(tmp_path, second.pending_dir, key, b"%PDF-1.7")
    assert pending.startswith(f"{second.pending_dir}/")
    await first.publish(pending, key)  # any store of that root can publish it
    assert await first.get_bytes(key) == b"%PDF-1.7"
    age(tmp_path / PENDING_DIR / second.pending_dir)
    assert await first.sweep_pending(3600) == 0
    assert list((tmp_path / PENDING_DIR).iterdir()) == []  # the other store's, idle, is gone
    again = write_pending(tmp_path, second.pending_dir, key, b"%PDF-1.7")  # made again
    await second.publish(again, key)


async def test_emls_are_written_by_way_of_a_directory_of_the_process_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    stale = outbox / SCRATCH_DIR / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / ".half.eml.tmp").write_bytes(b"From: ")  # a process killed while writing
    old = time.time() - 2 * STALE_SCRATCH_S
    for path in (stale / ".half.eml.tmp", stale):
        os.utime(path, (old, old))
    writer = EmlWriter(outbox)
    made_in: list[str] = []
    mkstemp = tempfile.mkstemp

    def recording_mkstemp(**kwargs: Any) -> tuple[int, str]:
        made_in.append(str(kwargs["dir"]))
        return mkstemp(**kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    paths = await writer([("a.eml", b"one"), ("b.eml", b"two")])
    assert paths == [outbox / "a.eml", outbox / "b.eml"]
    assert [path.read_bytes() for path in paths] == [b"one", b"two"]
    (scratch,) = (outbox / SCRATCH_DIR).iterdir()  # the stale one gone, this process's made
    assert scratch != stale and list(scratch.iterdir()) == []
    assert set(made_in) == {str(scratch)}  # the temp files were made there, then renamed
    assert is_top_directory(outbox / SCRATCH_DIR) == make_top_directory(tmp_path / "probe")
    scratch.rmdir()  # swept away while the process was idle: made again
    assert await writer([("a.eml", b"three")]) == [outbox / "a.eml"]
    assert (outbox / "a.eml").read_bytes() == b"three"
