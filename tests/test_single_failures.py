"""A single upload whose certificate cannot be created leaves nothing that counts."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import single_form

FAIL_INSERTS = """
CREATE FUNCTION refuse_certificates() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'simulated database failure'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON certificates
    FOR EACH ROW EXECUTE FUNCTION refuse_certificates();
"""


async def test_its_upload_is_expired_at_once_and_frees_the_quota(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    await conn.execute(FAIL_INSERTS)
    form = single_form(1)
    response = await client.post("/business/certificate-vault", data=form, headers=bearer(token))
    assert response.status == 500
    assert await conn.fetchval("SELECT count(*) FROM certificates") == 0
    # the upload whose file_id nobody got is expired: out of the quota, swept with its file
    assert await conn.fetchval("SELECT count(*) FROM uploads WHERE expires_at > now()") == 0
    assert await conn.fetchval("SELECT count(*) FROM uploads") == 1
