"""Rendering in place on the local store: the render process reads the original and writes
the verified PDF as a pending file; the job publishes it under its key (fsync, rename, fsync
the directory); a pending file nobody published is swept, never seen under a key."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pikepdf
import pytest

from service.artifacts import ArtifactError
from service.artifacts.on_disk import (
    NotRendered,
    OriginalMissing,
    RenderedToDisk,
    RenderOrder,
    render_many_to_disk,
    render_to_disk,
)
from service.cpupool import CpuPool
from service.files import FileMissing, StorageError
from service.files import local as local_files
from service.files.local import PENDING_DIR, LocalFileStore, read_local, write_pending
from tests.samples import make_pdf
from tests.test_files import MB, file_size_limit

STAMP = {
    "reference_id": "VEC-IC-2026ABCDEF0123456",
    "verify_url": "https://vault.example.test/verify/VEC-IC-2026ABCDEF0123456",
    "institution_name": "Example Institute",
}
KEY = "certificates/ab/a.pdf"
RUN = "run1"  # a store's own pending directory


def pending_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / PENDING_DIR)) for p in root.glob(f"{PENDING_DIR}/*/*"))


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsynced in this process (through the local store's module)."""
    paths: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(local_files.os, "fsync", recording_fsync)
    return paths


async def test_a_render_process_writes_a_pending_pdf_the_job_publishes_durably(
    tmp_path: Path, synced: list[str]
) -> None:
    store = LocalFileStore(tmp_path / "files")
    await store.put_bytes("uploads/a.pdf", make_pdf(pages=3), "application/pdf")
    pool = CpuPool(1)
    try:
        rendered = await pool.run(
            render_to_disk, store.root, RUN, "uploads/a.pdf", KEY, "application/pdf", **STAMP
        )
    finally:
        await pool.close()
    assert not (store.root / "certificates").exists()  # nothing under a key before publishing
    synced.clear()
    await store.publish(rendered.pending, KEY)
    target = store.root / KEY
    assert synced[0].endswith(f"{PENDING_DIR}/{rendered.pending}")  # the data, before the rename
    assert str(target.parent) in synced  # then the directory holding the new entry
    pdf = await store.get_bytes(KEY)
    assert (len(pdf), hashlib.sha256(pdf).hexdigest()) == (
        rendered.verified_pdf_size,
        rendered.verified_pdf_sha256,
    )
    assert rendered.qr_svg.lstrip().startswith(b"<?xml")
    with pikepdf.open(target) as document:
        assert len(document.pages) == 3
    assert pending_files(store.root) == []


async def test_the_first_publish_into_a_directory_makes_its_parents_durable_too(
    tmp_path: Path, synced: list[str]
) -> None:
    """The directory may have been made by a process that died before fsyncing its parent:
    this store fsyncs the chain up to its root once per directory, then the directory only."""
    root = tmp_path / "files"
    (root / "certificates" / "ab").mkdir(parents=True)  # made by someone else
    store = LocalFileStore(root)
    await store.publish(write_pending(root, RUN, KEY, b"one"), KEY)
    chain = [str(root / "certificates" / "ab"), str(root / "certificates"), str(root)]
    assert synced[1:] == chain  # after the file itself
    synced.clear()
    second = "certificates/ab/b.pdf"
    await store.publish(write_pending(root, RUN, second, b"two"), second)
    assert synced[1:] == chain[:1]
    synced.clear()
    await store.publish(write_pending(root, RUN, "top.pdf", b"three"), "top.pdf")
    assert synced[1:] == [str(root)]  # nothing above the root


async def test_the_stores_own_writes_make_a_directory_chain_durable_once(
    tmp_path: Path, synced: list[str]
) -> None:
    root = tmp_path / "files"
    (root / "uploads").mkdir(parents=True)  # made by someone else
    store = LocalFileStore(root)
    await store.put_bytes("uploads/a.pdf", b"one", "application/pdf")
    assert synced[1:] == [str(root / "uploads"), str(root)]  # after the file itself
    synced.clear()
    source = tmp_path / "source.pdf"
    source.write_bytes(b"two")
    await store.put_file("uploads/b.pdf", source)
    assert synced[1:] == [str(root / "uploads")]
    synced.clear()
    await store.put_bytes("new/deeper/c.pdf", b"three", "application/pdf")
    assert synced[1:] == [str(root / "new" / "deeper"), str(root / "new"), str(root)]


async def test_a_missing_original_is_its_own_error_across_processes(tmp_path: Path) -> None:
    pool = CpuPool(1)
    try:
        with pytest.raises(OriginalMissing):
            await pool.run(
                render_to_disk, tmp_path, RUN, "uploads/gone.pdf", KEY, "application/pdf", **STAMP
            )
        (tmp_path / "uploads").mkdir()
        (tmp_path / "uploads" / "bad.pdf").write_bytes(b"%PDF-1.7 not really")
        with pytest.raises(ArtifactError):
            await pool.run(
                render_to_disk, tmp_path, RUN, "uploads/bad.pdf", KEY, "application/pdf", **STAMP
            )
    finally:
        await pool.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]  # nothing written


def test_a_pending_write_that_fails_leaves_nothing_and_names_only_the_key(
    tmp_path: Path,
) -> None:
    with file_size_limit(MB), pytest.raises(StorageError) as caught:
        write_pending(tmp_path, RUN, KEY, b"\0" * (2 * MB))
    assert str(caught.value) == f"Local storage: cannot write '{KEY}': File too large"
    assert pending_files(tmp_path) == []
    blocked = tmp_path / "blocked"
    blocked.write_bytes(b"")
    with pytest.raises(StorageError, match=r"^Local storage: cannot write 'x/b\.pdf'"):
        write_pending(blocked, RUN, "x/b.pdf", b"x")


async def test_publishing_replaces_the_file_and_a_failure_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    store = LocalFileStore(tmp_path)
    await store.put_bytes(KEY, b"old content", "application/pdf")
    await store.publish(write_pending(tmp_path, RUN, KEY, b"new content"), KEY)
    assert await store.get_bytes(KEY) == b"new content"
    with pytest.raises(StorageError, match=rf"^Local storage: cannot write '{KEY}'"):
        await store.publish("ab/tmpnever_written.part", KEY)  # swept, or never there
    assert await store.get_bytes(KEY) == b"new content"
    (tmp_path / "certificates" / "cd").write_bytes(b"in the way of a directory")
    pending = write_pending(tmp_path, RUN, "certificates/cd/b.pdf", b"pdf")
    with pytest.raises(StorageError, match="Not a directory"):
        await store.publish(pending, "certificates/cd/b.pdf")
    assert pending_files(tmp_path) == []  # published or not, it is gone
    for bad in ("../../etc/passwd", "tmpx.part", "../tmpx.part", "ab/../tmpx.part"):
        with pytest.raises(ValueError, match="Invalid pending file name"):
            await store.publish(bad, KEY)
    assert write_pending(tmp_path, RUN, "top.pdf", b"x").startswith(f"{RUN}/")
    with pytest.raises(ValueError, match="Invalid pending directory"):
        write_pending(tmp_path, "../up", KEY, b"x")


async def test_many_renders_in_one_call_each_come_back_with_their_own_result(
    tmp_path: Path,
) -> None:
    store = LocalFileStore(tmp_path)
    await store.put_bytes("uploads/a.pdf", make_pdf(), "application/pdf")
    await store.put_bytes("uploads/c.pdf", b"not a PDF at all", "application/pdf")
    orders = [
        RenderOrder(
            original_key=f"uploads/{name}.pdf",
            verified_pdf_key=f"certificates/ab/{name}.pdf",
            mime_type="application/pdf",
            **STAMP,
        )
        for name in "abc"
    ]
    pool = CpuPool(1)
    try:
        unsafe = replace(orders[0], original_key="../outside.pdf")
        stop_at = time.time() + 60
        rendered, missing, broken, unexpected = await pool.run(
            render_many_to_disk, tmp_path, RUN, [*orders, unsafe], stop_at
        )
        late = await pool.run(render_many_to_disk, tmp_path, RUN, orders, time.time())
    finally:
        await pool.close()
    assert isinstance(rendered, RenderedToDisk)
    assert isinstance(missing, OriginalMissing)
    assert isinstance(broken, ArtifactError)
    # any other error comes back described (not every exception pickles)
    assert isinstance(unexpected, RuntimeError)
    assert str(unexpected).startswith("ValueError: Invalid storage key")
    assert pending_files(tmp_path) == [rendered.pending]
    assert [type(result) for result in late] == [NotRendered] * 3  # none started after stop_at


async def test_publishing_many_fsyncs_each_file_and_each_directory_once(
    tmp_path: Path, synced: list[str]
) -> None:
    """One whose directory cannot be made fails alone, its pending file removed."""
    store = LocalFileStore(tmp_path)
    (tmp_path / "certificates").mkdir()
    (tmp_path / "certificates" / "cd").write_bytes(b"in the way of a directory")
    keys = ["certificates/ab/x.pdf", "certificates/cd/y.pdf", "certificates/ab/z.pdf"]
    pending = [write_pending(tmp_path, RUN, key, key.encode()) for key in keys]
    errors = await store.publish_many(list(zip(pending, keys, strict=True)))
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], StorageError) and "Not a directory" in str(errors[1])
    assert [await store.get_bytes(key) for key in (keys[0], keys[2])] == [
        keys[0].encode(),
        keys[2].encode(),
    ]
    assert pending_files(tmp_path) == []
    ab = str(tmp_path / "certificates" / "ab")
    files = [path for path in synced if path.endswith(".part")]
    assert len(files) == 3  # each file's data, the one that failed too (before its rename)
    assert synced.count(ab) == 1
    assert str(tmp_path / "certificates") in synced and str(tmp_path) in synced  # a new directory
    assert synced.index(ab) > max(synced.index(path) for path in files)


async def test_housekeeping_sweeps_old_pending_files_only(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    old, fresh = write_pending(tmp_path, RUN, KEY, b"a"), write_pending(tmp_path, RUN, KEY, b"b")
    hours_ago = time.time() - 7200
    os.utime(tmp_path / PENDING_DIR / old, (hours_ago, hours_ago))
    assert await store.sweep_pending(3600) == 1
    assert pending_files(tmp_path) == [fresh]
    assert await LocalFileStore(tmp_path / "empty").sweep_pending(3600) == 0


def test_keys_are_checked_in_the_render_process_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid storage key"):
        read_local(tmp_path, "../outside.pdf")
    with pytest.raises(ValueError, match="Invalid storage key"):
        write_pending(tmp_path, RUN, "../outside.pdf", b"x")
    with pytest.raises(FileMissing):
        read_local(tmp_path, "uploads/none.pdf")
