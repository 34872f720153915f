"""Institution B can neither see, use, retry, download nor list institution A's resources, and
gets exactly the answer it would get for an id that does not exist."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import BULK_URL, entry, upload

BASE = "/business/certificate-vault"


@pytest.fixture
async def world(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> dict[str, str]:
    """A's upload, batch and (failed, so retryable) certificate; B's all-permission token."""
    a = await make_token("all", institution="Alpha University")
    b = await make_token("all", institution="Beta College")
    used, spare = await upload(client, a), await upload(client, a)
    response = await client.post(BULK_URL, json={"entries": [entry(used)]}, headers=bearer(a))
    batch = (await response.json())["data"]["batch_id"]
    certificate = str(await conn.fetchval("SELECT uuid FROM certificates"))
    await conn.execute("UPDATE certificates SET status = 'failed', error = 'x'")
    return {"a": a, "b": b, "spare": spare, "batch": batch, "certificate": certificate}


def not_found(body: dict[str, str], resource_id: str) -> dict[str, str]:
    return {**body, "message": body["message"].replace(resource_id, "<id>")}


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", BASE + "/{certificate}"),
        ("POST", BASE + "/{certificate}/retry"),
        ("GET", BASE + "/{certificate}/download"),
        ("GET", BASE + "/{certificate}/original"),
        ("GET", BASE + "/batches/{batch}"),
        ("GET", BASE + "/batches/{batch}/errors"),
        ("GET", "/business/batches/{batch}/status"),
    ],
)
async def test_foreign_ids_answer_like_missing_ones(
    client: TestClient, world: dict[str, str], method: str, template: str
) -> None:
    foreign = template.format(**world)
    resource_id = world["certificate"] if "{certificate}" in template else world["batch"]
    missing_id = str(uuid.uuid4())
    missing = foreign.replace(resource_id, missing_id)
    theirs = await client.request(method, foreign, headers=bearer(world["b"]))
    nothing = await client.request(method, missing, headers=bearer(world["b"]))
    assert theirs.status == nothing.status == 404
    assert not_found(await theirs.json(), resource_id) == not_found(
        await nothing.json(), missing_id
    )
    # and the owner does reach it
    owner = await client.request(method, foreign, headers=bearer(world["a"]))
    assert owner.status != 404 or template.endswith("/download")


async def test_lists_show_only_the_callers_resources(
    client: TestClient, world: dict[str, str]
) -> None:
    for path in (
        BASE,
        BASE + "/batches",
        f"{BASE}?batch_id={world['batch']}",
        f"{BASE}?search=Student",
    ):
        theirs = await (await client.get(path, headers=bearer(world["b"]))).json()
        assert theirs["data"] == [] and theirs["meta"]["total"] == 0, path
        mine = await (await client.get(path, headers=bearer(world["a"]))).json()
        assert mine["meta"]["total"] == 1, path


async def test_a_foreign_file_id_cannot_be_used(client: TestClient, world: dict[str, str]) -> None:
    body = {"entries": [entry(world["spare"])]}
    response = await client.post(BULK_URL, json=body, headers=bearer(world["b"]))
    assert response.status == 422
    assert await response.json() == {
        "message": "Some file_ids could not be resolved",
        "errors": [f"Entry 0: file_id {world['spare']} not found"],
    }
    still_usable = await client.post(BULK_URL, json=body, headers=bearer(world["a"]))
    assert still_usable.status == 202
