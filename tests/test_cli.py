"""The operator command line and the embedded PostgreSQL, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from service import db


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_institutions_and_tokens_commands(dsn: str) -> None:
    env = {"DATABASE_URL": dsn}
    created = run_cli(
        "institutions", "create", "--name", "Beta College", "--email", "x@beta.test", env=env
    )
    assert created.returncode == 0, created.stderr
    listed = run_cli("institutions", "list", env=env)
    assert "Beta College" in listed.stdout
    token_out = run_cli(
        "tokens",
        "create",
        "--institution",
        "Beta College",
        "--name",
        "ci",
        "--permission",
        "batches:view",
        "--permission",
        "certificate-vault:list",
        env=env,
    )
    assert token_out.returncode == 0, token_out.stderr
    token = token_out.stdout.strip().splitlines()[-1]
    assert token.startswith("vlt_") and len(token) >= 4 + 43
    tokens = run_cli("tokens", "list", env=env)
    assert token[:12] in tokens.stdout and token not in tokens.stdout
    assert "active" in tokens.stdout
    bad = run_cli(
        "tokens",
        "create",
        "--institution",
        "Beta College",
        "--name",
        "x",
        "--permission",
        "root",
        env=env,
    )
    assert bad.returncode != 0 and "unknown permission" in bad.stderr
    revoked = run_cli("tokens", "revoke", token[:12], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run_cli("tokens", "list", env=env).stdout


async def test_only_the_token_hash_is_stored(dsn: str) -> None:
    env = {"DATABASE_URL": dsn}
    run_cli("institutions", "create", "--name", "Gamma", "--email", "g@g.test", env=env)
    out = run_cli(
        "tokens", "create", "--institution", "Gamma", "--name", "t", "--permission", "all", env=env
    )
    token = out.stdout.strip().splitlines()[-1]
    conn = await asyncpg.connect(dsn)
    try:
        dump = str([dict(r) for r in await conn.fetch("SELECT * FROM api_tokens")])
        assert token not in dump and token[12:] not in dump
    finally:
        await conn.close()


@pytest.mark.slow
async def test_embedded_postgres_starts_serves_stops_and_keeps_data(tmp_path: Path) -> None:
    server = db.EmbeddedPostgres(tmp_path / "pg")
    admin = server.start()
    try:
        await db.ensure_database(admin, "vault")
        conn = await asyncpg.connect(server.dsn("vault"))
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
    finally:
        server.stop()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(server_dsn_after_stop(tmp_path / "pg"), timeout=3)
    again = db.EmbeddedPostgres(tmp_path / "pg")
    again.start()
    try:
        conn = await asyncpg.connect(again.dsn("vault"))
        assert await conn.fetchval("SELECT v FROM kept") == 42
        await conn.close()
    finally:
        again.stop()


def server_dsn_after_stop(directory: Path) -> str:
    return f"postgresql://postgres@/vault?host={directory.resolve()}"
