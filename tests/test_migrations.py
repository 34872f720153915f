"""Migrations: apply to an empty database, re-run as a no-op, and never race."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service import db
from tests.conftest import _replace_database


@pytest.fixture
async def empty_dsn(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"vault_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield _replace_database(pg_admin_dsn, name)
    admin = await asyncpg.connect(pg_admin_dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


async def test_apply_then_rerun_is_a_no_op(empty_dsn: str) -> None:
    conn = await asyncpg.connect(empty_dsn)
    try:
        applied = await db.migrate(conn)
        assert applied == [m.version for m in db.load_migrations()]
        assert await db.migrate(conn) == []
        assert await db.pending_migrations(conn) == []
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {"institutions", "api_tokens", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_migrate_calls_do_not_fail(empty_dsn: str) -> None:
    connections = [await asyncpg.connect(empty_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in connections))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in db.load_migrations()]
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(db.load_migrations())
    finally:
        for c in connections:
            await c.close()


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in db.load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
