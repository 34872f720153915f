"""Housekeeping removes what has expired, and only that."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from service import maintenance
from service.keys import POOL
from service.resources import FILES
from tests.conftest import TokenFactory


async def test_housekeeping_purges_expired_keys_and_rate_windows(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    await make_token("all")
    institution_id = await conn.fetchval("SELECT id FROM institutions")
    await conn.execute(
        "INSERT INTO idempotency_keys (institution_id, key, request_hash, created_at)"
        " VALUES ($1, 'old', '\\x00', now() - interval '25 hours'),"
        " ($1, 'fresh', '\\x00', now())",
        institution_id,
    )
    await conn.execute(
        "INSERT INTO rate_limits (bucket, subject, window_start, expires_at, hits) VALUES"
        " ('b', 'old', now() - interval '2 minutes', now() - interval '1 minute', 1),"
        " ('b', 'new', now(), now() + interval '1 minute', 1)"
    )
    await maintenance.run_once(client.app[POOL], client.app[FILES])
    assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]
    assert [r["subject"] for r in await conn.fetch("SELECT subject FROM rate_limits")] == ["new"]
