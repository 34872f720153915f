"""The FileStore behaviour suite, run on the local backend and on S3 (moto on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from service.files import FileMissing, FileStore, StorageError, open_file_store
from service.files.local import LocalFileStore
from service.files.s3 import S3FileStore
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, create_bucket, moto_s3

MB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


def s3_options(endpoint: str) -> dict[str, str]:
    return {"s3_endpoint_url": endpoint, "s3_access_key": ACCESS_KEY, "s3_secret_key": SECRET_KEY}


@pytest.fixture
async def s3_bucket(s3_endpoint: str) -> str:
    bucket = f"vault-{uuid.uuid4().hex[:12]}"
    await create_bucket(s3_endpoint, bucket)
    return bucket


@pytest.fixture(scope="module")
def shared_bucket(s3_endpoint: str) -> str:
    """One bucket for the behaviour suite; each test gets its own prefix in it."""
    bucket = f"vault-{uuid.uuid4().hex[:12]}"
    asyncio.run(create_bucket(s3_endpoint, bucket))
    return bucket


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str, shared_bucket: str
) -> AsyncIterator[FileStore]:
    if request.param == "local":
        url = (tmp_path / "store").as_uri()
        options: dict[str, str] = {}
    else:
        url = f"s3://{shared_bucket}/{uuid.uuid4().hex}"
        options = s3_options(s3_endpoint)
    async with open_file_store(url, **options) as opened:
        yield opened


async def collect(store: FileStore, key: str, chunk_size: int = 1 << 16) -> bytes:
    return b"".join([chunk async for chunk in store.open_stream(key, chunk_size)])


async def test_bytes_round_trip(store: FileStore) -> None:
    assert not await store.exists("certs/a.pdf")
    await store.put_bytes("certs/a.pdf", b"%PDF-1.7 hello", "application/pdf")
    assert await store.exists("certs/a.pdf")
    assert await store.get_bytes("certs/a.pdf") == b"%PDF-1.7 hello"
    assert await collect(store, "certs/a.pdf", chunk_size=4) == b"%PDF-1.7 hello"


async def test_put_replaces_previous_content(store: FileStore) -> None:
    await store.put_bytes("k.bin", b"first version", "application/octet-stream")
    await store.put_bytes("k.bin", b"second", "application/octet-stream")
    assert await store.get_bytes("k.bin") == b"second"


async def test_put_many_stores_each_and_replaces(store: FileStore) -> None:
    await store.put_bytes("c/1/b.svg", b"old", "image/svg+xml")
    items = [
        ("c/1/a.svg", b"<svg>a</svg>", "image/svg+xml"),
        ("c/1/b.svg", b"<svg>b</svg>", "image/svg+xml"),
        ("c/2/deep/c.pdf", b"%PDF-1.7 c", "application/pdf"),
    ]
    await store.put_many(items)
    for key, data, _ in items:
        assert await store.get_bytes(key) == data


async def test_delete_and_delete_missing(store: FileStore) -> None:
    await store.put_bytes("gone.png", b"x", "image/png")
    await store.delete("gone.png")
    assert not await store.exists("gone.png")
    await store.delete("gone.png")
    await store.delete("never/existed.pdf")


async def test_missing_key_raises_file_missing(store: FileStore) -> None:
    with pytest.raises(FileMissing):
        await store.get_bytes("nope/missing.pdf")
    with pytest.raises(FileMissing):
        await collect(store, "nope/missing.pdf")


async def test_twenty_megabyte_file_streams_back_equal(store: FileStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.part"
    data = os.urandom(20 * MB)
    source.write_bytes(data)
    await store.put_file("uploads/big.pdf", source)
    digest, sizes = hashlib.sha256(), []
    async for chunk in store.open_stream("uploads/big.pdf", chunk_size=1 << 20):
        digest.update(chunk)
        sizes.append(len(chunk))
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sum(sizes) == 20 * MB
    assert max(sizes) <= 1 << 20
    assert source.read_bytes() == data


async def test_stream_closed_early_releases_resources(store: FileStore) -> None:
    await store.put_bytes("early.bin", os.urandom(MB), "application/octet-stream")
    async with contextlib.aclosing(store.open_stream("early.bin", 1024)) as stream:
        first = await anext(stream)
    assert len(first) == 1024
    assert await store.get_bytes("early.bin")


UNSAFE_KEYS = [
    "", "/etc/passwd", "../x.pdf", "a/../../b", "a//b", "a/", "./a", "a/./b", "..", "a b.pdf",
    "a\\b.pdf", "x\x00.pdf", "é.pdf", "a\n.pdf", "x" * 600,
]  # fmt: skip


async def test_unsafe_keys_are_rejected(store: FileStore) -> None:
    for key in UNSAFE_KEYS:
        with pytest.raises(ValueError, match="Invalid storage key"):
            await store.put_bytes(key, b"x", "application/pdf")
        with pytest.raises(ValueError, match="Invalid storage key"):
            await store.get_bytes(key)
        with pytest.raises(ValueError, match="Invalid storage key"):
            await store.delete(key)


async def test_local_unsafe_key_writes_nothing(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "root")
    with pytest.raises(ValueError, match="Invalid storage key"):
        await store.put_bytes("../escape.pdf", b"x", "application/pdf")
    assert list(tmp_path.iterdir()) == []


async def test_local_unwritable_root_gives_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    store = LocalFileStore(blocker / "store")
    with pytest.raises(StorageError) as caught:
        await store.put_bytes("certs/a.pdf", b"data", "application/pdf")
    assert str(caught.value) == "Local storage: cannot write 'certs/a.pdf': Not a directory"
    with pytest.raises(StorageError):
        await store.put_file("certs/a.pdf", tmp_path / "whatever")
    with pytest.raises(StorageError, match=r"cannot write 'certs/b\.svg': Not a directory"):
        await store.put_many([("certs/b.svg", b"<svg/>", "image/svg+xml")])


@contextlib.contextmanager
def file_size_limit(limit_bytes: int) -> Iterator[None]:
    """Make writes past ``limit_bytes`` fail with EFBIG, like a disk that fills up mid-write."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_local_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    await store.put_bytes("certs/a.pdf", b"old content", "application/pdf")
    with file_size_limit(MB), pytest.raises(StorageError) as caught:
        await store.put_bytes("certs/a.pdf", b"\0" * (2 * MB), "application/pdf")
    assert str(caught.value) == "Local storage: cannot write 'certs/a.pdf': File too large"
    assert await store.get_bytes("certs/a.pdf") == b"old content"
    assert [p.name for p in (tmp_path / "certs").iterdir()] == ["a.pdf"]


async def test_local_missing_source_leaves_no_temp(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path / "store")
    with pytest.raises(StorageError, match="No such file or directory"):
        await store.put_file("certs/a.pdf", tmp_path / "does-not-exist")
    assert list((tmp_path / "store" / "certs").iterdir()) == []


async def test_local_files_are_private(tmp_path: Path) -> None:
    store = LocalFileStore(tmp_path)
    await store.put_bytes("a.pdf", b"x", "application/pdf")
    assert (tmp_path / "a.pdf").stat().st_mode & 0o777 == 0o600


async def test_s3_missing_bucket_gives_storage_error(s3_endpoint: str) -> None:
    async with open_file_store("s3://no-such-bucket-here", **s3_options(s3_endpoint)) as store:
        with pytest.raises(StorageError, match="NoSuchBucket"):
            await store.put_bytes("a.pdf", b"x", "application/pdf")


async def test_s3_unreachable_endpoint_gives_storage_error() -> None:
    # A client without retries: the service's own client backs off for seconds.
    config = AioConfig(retries={"max_attempts": 1}, connect_timeout=2)
    async with get_session().create_client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    ) as client:
        store = S3FileStore(client, bucket="any")
        with pytest.raises(StorageError, match="EndpointConnectionError"):
            await store.get_bytes("a.pdf")
        with pytest.raises(StorageError, match="EndpointConnectionError"):
            await store.put_bytes("a.pdf", b"x", "application/pdf")


async def test_s3_prefix_and_repr(s3_endpoint: str, s3_bucket: str) -> None:
    options = s3_options(s3_endpoint) | {"s3_secret_key": "very-secret-value"}
    async with open_file_store(f"s3://{s3_bucket}/tenant/files/", **options) as store:
        assert isinstance(store, S3FileStore)
        await store.put_bytes("a.pdf", b"prefixed", "application/pdf")
        assert "very-secret-value" not in repr(store)
    async with open_file_store(f"s3://{s3_bucket}", **s3_options(s3_endpoint)) as bare:
        assert await bare.get_bytes("tenant/files/a.pdf") == b"prefixed"


async def test_factory_local_urls(tmp_path: Path) -> None:
    for url in (tmp_path.as_uri(), str(tmp_path), f"file://localhost{tmp_path}"):
        async with open_file_store(url) as store:
            assert isinstance(store, LocalFileStore)
            assert store.root == tmp_path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "Unsupported file store URL scheme 'ftp'"),
        ("file://otherhost/x", "must be file:///absolute/path"),
        ("s3:///prefix-only", "names no bucket"),
        ("", "is empty"),
    ],
)
async def test_factory_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with open_file_store(url):
            pass
