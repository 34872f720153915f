"""Rendering in place on the local store: the render process reads the original and writes
the verified PDF unsynced; the store then makes it durable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pikepdf
import pytest

from service.artifacts import ArtifactError
from service.artifacts.on_disk import OriginalMissing, render_to_disk
from service.cpupool import CpuPool
from service.files import FileMissing, StorageError
from service.files.local import LocalFileStore, read_local, write_unsynced
from tests.samples import make_pdf
from tests.test_files import MB, file_size_limit

STAMP = {
    "reference_id": "VEC-IC-2026ABCDEF0123456",
    "verify_url": "https://vault.example.test/verify/VEC-IC-2026ABCDEF0123456",
    "institution_name": "Example Institute",
}


async def test_a_render_process_writes_the_pdf_the_store_then_makes_durable(
    tmp_path: Path,
) -> None:
    store = LocalFileStore(tmp_path / "files")
    await store.put_bytes("uploads/a.pdf", make_pdf(pages=3), "application/pdf")
    pool = CpuPool(1)
    try:
        written = await pool.run(
            render_to_disk,
            store.root,
            "uploads/a.pdf",
            "certificates/ab/a.pdf",
            "application/pdf",
            **STAMP,
        )
    finally:
        await pool.close()
    await store.make_durable("certificates/ab/a.pdf")
    pdf = await store.get_bytes("certificates/ab/a.pdf")
    assert (len(pdf), hashlib.sha256(pdf).hexdigest()) == (
        written.verified_pdf_size,
        written.verified_pdf_sha256,
    )
    assert written.qr_svg.lstrip().startswith(b"<?xml")
    with pikepdf.open(store.path("certificates/ab/a.pdf")) as document:
        assert len(document.pages) == 3
    assert [p.name for p in store.path("certificates/ab").iterdir()] == ["a.pdf"]  # no temp


async def test_a_missing_original_is_its_own_error_across_processes(tmp_path: Path) -> None:
    pool = CpuPool(1)
    try:
        with pytest.raises(OriginalMissing):
            await pool.run(
                render_to_disk, tmp_path, "uploads/gone.pdf", "c/x.pdf", "application/pdf", **STAMP
            )
        (tmp_path / "uploads").mkdir()
        (tmp_path / "uploads" / "bad.pdf").write_bytes(b"%PDF-1.7 not really")
        with pytest.raises(ArtifactError):
            await pool.run(
                render_to_disk, tmp_path, "uploads/bad.pdf", "c/x.pdf", "application/pdf", **STAMP
            )
    finally:
        await pool.close()
    assert not (tmp_path / "c" / "x.pdf").exists()


def test_unsynced_writes_are_atomic_and_name_only_the_key(tmp_path: Path) -> None:
    write_unsynced(tmp_path, "certs/a.pdf", b"old content")
    with file_size_limit(MB), pytest.raises(StorageError) as caught:
        write_unsynced(tmp_path, "certs/a.pdf", b"\0" * (2 * MB))
    assert str(caught.value) == "Local storage: cannot write 'certs/a.pdf': File too large"
    assert read_local(tmp_path, "certs/a.pdf") == b"old content"
    assert [p.name for p in (tmp_path / "certs").iterdir()] == ["a.pdf"]
    (tmp_path / "blocked").write_bytes(b"")
    with pytest.raises(StorageError, match=r"^Local storage: cannot write 'blocked/b\.pdf'"):
        write_unsynced(tmp_path, "blocked/b.pdf", b"x")


def test_keys_are_checked_in_the_render_process_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid storage key"):
        read_local(tmp_path, "../outside.pdf")
    with pytest.raises(ValueError, match="Invalid storage key"):
        write_unsynced(tmp_path, "../outside.pdf", b"x")
    with pytest.raises(FileMissing):
        read_local(tmp_path, "uploads/none.pdf")


async def test_making_a_missing_file_durable_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    with pytest.raises(StorageError, match=r"cannot sync 'certificates/ab/none\.pdf'"):
        await store.make_durable("certificates/ab/none.pdf")
