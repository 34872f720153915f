"""Shared benchmark plumbing: a private database, a service process, a token, timing stats."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from service import auth, db
from service.cli import issue_token
from service.data import institutions as institution_data


@contextmanager
def private_database(dsn: str | None) -> Iterator[str]:
    """The given DSN, or a fresh embedded PostgreSQL (durable defaults) removed afterwards."""
    if dsn:
        yield dsn
        return
    directory = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    server = db.EmbeddedPostgres(directory / "pg")
    admin = server.start()
    try:
        asyncio.run(db.ensure_database(admin, "vault"))
        yield server.dsn("vault")
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Service:
    base: str
    pid: int

    def rss_kb(self) -> int:
        """Resident memory of the service process (its CPU pool workers not included)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def tree_rss_kb(self) -> int:
        """Resident memory of the service process and all its descendants (its CPU pool)."""
        return _tree_rss_kb(self.pid)


def _tree_rss_kb(pid: int) -> int:
    total = Service("", pid).rss_kb()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            total += sum(_tree_rss_kb(int(child)) for child in children.read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # a process that ended while we looked
    return total


@contextmanager
def service_process(dsn: str, data_dir: Path, *, workers: int, **env: str) -> Iterator[Service]:
    """``vault-service serve`` on a free loopback port."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": dsn,
        "VAULT_DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "RATE_LIMIT_PER_TOKEN": "0",
        **env,
    }
    process = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=environment)
    service = Service(f"http://127.0.0.1:{port}", process.pid)
    try:
        asyncio.run(wait_ready(service.base))
        yield service
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def wait_ready(base: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the service did not become ready")


async def make_institution_token(dsn: str, name: str = "Bench University") -> tuple[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn)
        row = await institution_data.find_institution(conn, key=name)
        if row is None:
            row = await institution_data.create_institution(conn, name=name, email="b@bench.test")
        token = await issue_token(
            conn, institution_id=row["id"], name="bench", permissions=auth.PERMISSIONS
        )
        return row["id"], token
    finally:
        await conn.close()


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def cloned_uploads(
    service: Service, dsn: str, token: str, data: bytes, count: int
) -> list[str]:
    """One real upload of ``data``, cloned into ``count`` file_ids sharing its stored file, so
    that workers process real originals without ``count`` uploads."""
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="cert.pdf")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{service.base}/business/certificate-vault/upload-file", data=form) as r,
    ):
        assert r.status == 201, await r.text()
        file_id = (await r.json())["data"]["file_id"]
    async with connection(dsn) as conn:
        rows = await conn.fetch(
            "INSERT INTO uploads (institution_id, storage_key, file_name, mime_type, size,"
            " sha256, expires_at) SELECT institution_id, storage_key, file_name, mime_type,"
            " size, sha256, expires_at"
            " FROM uploads, generate_series(1, $2) WHERE uuid = $1::uuid RETURNING uuid",
            file_id,
            count,
        )
    return [str(row["uuid"]) for row in rows]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values_ms: list[float]) -> str:
    return (
        f"p50 {percentile(values_ms, 0.5):7.1f} ms  p95 {percentile(values_ms, 0.95):7.1f} ms"
        f"  mean {statistics.fmean(values_ms):7.1f} ms  (n={len(values_ms)})"
    )


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} cores"
