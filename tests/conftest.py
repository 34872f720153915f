"""Fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a fresh database per test
cloned from a migrated template, and the real app built by ``create_app``."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import auth, db
from service.app import create_app
from service.cli import issue_token
from service.config import Settings
from service.data import institutions as institution_data

# The webhook transport tests' receivers, sessions and doubles, shared by their three modules.
from tests.queue_helpers import done_table  # noqa: F401
from tests.webhook_helpers import guarded, no_connect, receiver, receiver_v6, session  # noqa: F401

if TYPE_CHECKING:
    from tests.drill_helpers import PrivatePostgres, Processes

TokenFactory = Callable[..., Awaitable[str]]


def _replace_database(dsn: str, name: str) -> str:
    """The same server, another database: works for both URL forms (host in query or netloc)."""
    head, sep, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}{sep}{query}"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's numbered temp dirs: a concurrent pytest run may prune those.
    directory = Path(tempfile.mkdtemp(prefix="vault-test-pg-"))
    server = db.EmbeddedPostgres(directory / "data")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> str:
    """A database migrated once with the production runner; each test clones it."""
    name = f"vault_tpl_{uuid.uuid4().hex[:10]}"

    async def build() -> None:
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(_replace_database(pg_admin_dsn, name))
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    return name


@pytest.fixture
async def dsn(pg_admin_dsn: str, template_db: str) -> AsyncIterator[str]:
    name = f"vault_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield _replace_database(pg_admin_dsn, name)
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(dsn: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=dsn,
        data_dir=tmp_path / "data",
        workers=0,
        db_pool_min=1,
        db_pool_max=5,
        public_base_url="http://vault.test",
    )


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    await db.init_connection(connection)
    yield connection
    await connection.close()


@pytest.fixture
async def client(
    settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    # `settings` (hence the database) is set up first, so the app is torn down before it is dropped.
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def make_token(conn: asyncpg.Connection) -> TokenFactory:
    """A token for an institution (created on first use by name) with the given permissions."""
    institutions: dict[str, int] = {}

    async def factory(*permissions: str, institution: str = "Alpha University") -> str:
        if institution not in institutions:
            row = await institution_data.create_institution(
                conn, name=institution, email=f"registrar@{institution.split()[0].lower()}.test"
            )
            institutions[institution] = row["id"]
        granted = list(auth.PERMISSIONS) if permissions == ("all",) else list(permissions)
        return await issue_token(
            conn, institution_id=institutions[institution], name="test", permissions=granted
        )

    return factory


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of the test's own, never the shared session server: it may be stopped."""
    from tests.drill_helpers import PrivatePostgres

    # not under pytest's numbered temp dirs, which a concurrent run may prune
    directory = Path(tempfile.mkdtemp(prefix="vault-private-pg-"))
    server = PrivatePostgres(directory / "pg")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """``python -m service ...`` processes of a test, killed at its end; logs in tmp_path."""
    from tests.drill_helpers import Processes  # (it imports this module)

    started = Processes(tmp_path)
    yield started
    started.kill_all()
