"""A single upload whose certificate cannot be created leaves nothing that counts."""

from __future__ import annotations

import aiohttp
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


async def test_without_a_file_every_field_problem_is_reported(
    client: TestClient, make_token: TokenFactory
) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("certificate_title", "")
    form.add_field("applicant_email", "not-an-email")
    token = await make_token("all")
    response = await client.post("/business/certificate-vault", data=form, headers=bearer(token))
    assert response.status == 422
    problems = (await response.json())["errors"]
    assert problems["certificate_file"] == ["The certificate file field is required."]
    assert {"certificate_title", "full_name", "applicant_email"} <= problems.keys()


async def test_a_wrong_type_names_the_certificate_file(
    client: TestClient, make_token: TokenFactory
) -> None:
    form = single_form(2, b"just some text")
    token = await make_token("all")
    response = await client.post("/business/certificate-vault", data=form, headers=bearer(token))
    assert response.status == 422
    assert (await response.json())["errors"] == {
        "certificate_file": ["The certificate file must be a file of type: pdf, jpg, jpeg, png."]
    }
