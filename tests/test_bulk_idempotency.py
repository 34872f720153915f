"""``POST /business/certificate-vault/bulk`` with an ``Idempotency-Key``: replays, bodies that
differ, failures that do not burn the key, concurrent retries, institutions, takeovers."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service import errors, idempotency
from service.keys import POOL
from tests.conftest import TokenFactory
from tests.vault_helpers import counts, entry, fake_uploads, institution_id, post_bulk


@pytest.fixture
async def token(make_token: TokenFactory) -> str:
    return await make_token("certificate-vault:create", "batches:view")


async def test_idempotent_replay_returns_the_first_response(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    body = {"entries": [entry(file_id)]}
    first = await post_bulk(client, token, body, **{"Idempotency-Key": "retry-1"})
    again = await post_bulk(client, token, body, **{"Idempotency-Key": "retry-1"})
    assert first[0] == again[0] == 202
    assert first[1] == again[1]
    assert await counts(conn) == (1, 1, 1, 0)
    other = await post_bulk(
        client, token, {"entries": [entry(file_id, 2)]}, **{"Idempotency-Key": "retry-1"}
    )
    assert other[0] == 422 and "different request body" in other[1]["message"]
    assert other[1]["errors"] == [other[1]["message"]]


async def test_a_failed_request_does_not_burn_its_key(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    bad = await post_bulk(
        client,
        token,
        {"entries": [entry(file_id, applicant_email="x")]},
        **{"Idempotency-Key": "k"},
    )
    assert bad[0] == 422
    good = await post_bulk(client, token, {"entries": [entry(file_id)]}, **{"Idempotency-Key": "k"})
    assert good[0] == 202


async def test_concurrent_requests_with_one_key_make_one_batch(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=50)
    body = {"entries": [entry(f, n) for n, f in enumerate(files)]}
    results = await asyncio.gather(
        *(post_bulk(client, token, body, **{"Idempotency-Key": "same"}) for _ in range(20))
    )
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {202, 409}
    accepted = {payload["data"]["batch_id"] for status, payload in results if status == 202}
    assert len(accepted) == 1
    assert await counts(conn) == (1, 50, 4, 0)  # small PDFs, 16 to a job


async def test_idempotency_keys_are_per_institution(
    client: TestClient, token: str, conn: asyncpg.Connection, make_token: TokenFactory
) -> None:
    other = await make_token("certificate-vault:create", institution="Beta College")
    (mine,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    (theirs,) = await fake_uploads(
        conn, institution_id=await institution_id(conn, "Beta College"), count=1
    )
    a = await post_bulk(client, token, {"entries": [entry(mine)]}, **{"Idempotency-Key": "shared"})
    b = await post_bulk(
        client, other, {"entries": [entry(theirs)]}, **{"Idempotency-Key": "shared"}
    )
    assert a[0] == b[0] == 202
    assert a[1]["data"]["batch_id"] != b[1]["data"]["batch_id"]


async def test_a_taken_over_key_cannot_be_completed_or_released_by_its_first_owner(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    pool = client.app[POOL]
    owner = await institution_id(conn)
    first = await idempotency.claim(pool, institution_id=owner, key="k", body=b"{}")
    assert isinstance(first, idempotency.Claim)
    # the first request stalls past the takeover delay; its retry takes the key over
    await conn.execute("UPDATE idempotency_keys SET locked_at = now() - interval '5 minutes'")
    second = await idempotency.claim(pool, institution_id=owner, key="k", body=b"{}")
    assert isinstance(second, idempotency.Claim) and second.token != first.token
    await first.release(pool)
    assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 1
    with pytest.raises(errors.Conflict):
        async with pool.acquire() as own, own.transaction():
            await first.record(own, status=202, body={"late": True})
    async with pool.acquire() as own, own.transaction():
        await second.record(own, status=202, body={"ok": True})
    replay = await idempotency.claim(pool, institution_id=owner, key="k", body=b"{}")
    assert replay == idempotency.Replay(202, {"ok": True})
