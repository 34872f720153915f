"""Lists: Laravel's paginator shape with public links, filters, and bad query values."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import BULK_URL, entry, fake_uploads, institution_id

LIST = "/business/certificate-vault"


async def seed(client: TestClient, token: str, conn: asyncpg.Connection, count: int) -> None:
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=count)
    body = {"entries": [entry(f, n) for n, f in enumerate(files)]}
    assert (await client.post(BULK_URL, json=body, headers=bearer(token))).status == 202


async def test_pagination_meta_and_links_use_the_public_address(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    await seed(client, token, conn, 7)
    page = await (await client.get(f"{LIST}?per_page=3&page=2", headers=bearer(token))).json()
    assert [item["full_name"] for item in page["data"]] == ["Student 3", "Student 2", "Student 1"]
    assert page["meta"] == {
        "current_page": 2,
        "from": 4,
        "last_page": 3,
        "path": "http://vault.test/business/certificate-vault",
        "per_page": 3,
        "to": 6,
        "total": 7,
    }
    links = page["links"]
    assert links["first"] == "http://vault.test/business/certificate-vault?per_page=3&page=1"
    assert links["prev"].endswith("page=1") and links["next"].endswith("page=3")
    assert links["last"].endswith("page=3")
    beyond = await (await client.get(f"{LIST}?per_page=3&page=9", headers=bearer(token))).json()
    assert (
        beyond["data"] == [] and beyond["meta"]["from"] is None and beyond["links"]["next"] is None
    )


async def test_bad_query_values_are_422(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("all")
    for query, field in [
        ("status=bogus", "status"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=abc", "page"),
        ("applicant_email=not-an-email", "applicant_email"),
        ("batch_id=123", "batch_id"),
        ("search=%00", "search"),
        ("search=abc%00def", "search"),
    ]:
        response = await client.get(f"{LIST}?{query}", headers=bearer(token))
        assert response.status == 422, query
        assert list((await response.json())["errors"]) == [field], query


async def test_streamed_downloads_carry_the_request_id(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    from tests.vault_helpers import upload

    token = await make_token("all")
    file_id = await upload(client, token)
    assert (
        await client.post(BULK_URL, json={"entries": [entry(file_id)]}, headers=bearer(token))
    ).status == 202
    uuid = await conn.fetchval("SELECT uuid FROM certificates")
    response = await client.get(
        f"{LIST}/{uuid}/original", headers={**bearer(token), "X-Request-ID": "dl-1"}
    )
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "dl-1"


async def test_a_blank_issue_date_counts_as_absent(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=2)
    entries = [entry(files[0], 0, issue_date=""), entry(files[1], 1, issue_date="  ")]
    response = await client.post(BULK_URL, json={"entries": entries}, headers=bearer(token))
    assert response.status == 202, await response.text()
    assert await conn.fetchval("SELECT count(*) FROM certificates WHERE issue_date IS NULL") == 2


async def test_a_file_missing_from_storage_answers_the_resource_404(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    assert (
        await client.post(BULK_URL, json={"entries": [entry(file_id)]}, headers=bearer(token))
    ).status == 202
    uuid = await conn.fetchval("SELECT uuid::text FROM certificates")  # its file was never stored
    response = await client.get(f"{LIST}/{uuid}/original", headers=bearer(token))
    assert response.status == 404
    assert await response.json() == {
        "message": f"The requested ID {uuid} was not found.",
        "error": "resource_not_found",
    }


async def test_a_422_message_is_the_first_problem_alone(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("all")
    response = await client.get(f"{LIST}?per_page=101&status=bogus", headers=bearer(token))
    assert response.status == 422
    body = await response.json()
    assert len(body["errors"]) == 2
    assert body["message"] == next(iter(body["errors"].values()))[0]
