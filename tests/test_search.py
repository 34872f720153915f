"""The certificate list's filters and search: what each matches, and the search window."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import BULK_URL, entry, fake_uploads, institution_id

BASE = "/business/certificate-vault"
PEOPLE = [
    ("Bachelor of Science", "Ada Lovelace", "ada@analytical.org"),
    ("Master of Arts", "Grace Hopper", "grace.hopper@navy.example"),
    ("Diploma in Nursing", "Florence Nightingale", "lamp@scutari.example"),
    ("100% Attendance", "Alan Turing", "alan_t@bletchley.example"),
    ("Bachelor of Arts", "Mary Somerville", "mary@somerville.example"),
]


async def submit(
    client: TestClient, conn: asyncpg.Connection, token: str, rows: list[dict[str, Any]]
) -> str:
    owner = await institution_id(conn, "Alpha University")
    files = await fake_uploads(conn, institution_id=owner, count=len(rows))
    body = {
        "entries": [entry(f, n, **row) for n, (f, row) in enumerate(zip(files, rows, strict=True))]
    }
    response = await client.post(BULK_URL, json=body, headers=bearer(token))
    assert response.status == 202, await response.text()
    batch_id: str = (await response.json())["data"]["batch_id"]
    return batch_id


async def names(client: TestClient, token: str, query: str) -> list[str]:
    response = await client.get(f"{BASE}?{query}", headers=bearer(token))
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["meta"]["total"] == len(body["data"])
    assert "X-Search-Truncated" not in response.headers
    return sorted(item["full_name"] for item in body["data"])


@pytest.fixture
async def vault(client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection) -> str:
    token = await make_token("all")
    rows = [
        {"certificate_title": title, "full_name": name, "applicant_email": email}
        for title, name, email in PEOPLE
    ]
    await submit(client, conn, token, rows)
    await conn.execute(
        "UPDATE certificates SET status = 'generated',"
        " reference_id = 'VEC-IC-2025ABCDEF' || lpad(entry_index::text, 6, '0')"
        " WHERE entry_index < 2"
    )
    return token


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("search=bachelor", ["Ada Lovelace", "Mary Somerville"]),
        ("search=ARTS", ["Grace Hopper", "Mary Somerville"]),
        ("search=ngale", ["Florence Nightingale"]),
        ("search=grace.hopper@", ["Grace Hopper"]),
        ("search=navy.example", ["Grace Hopper"]),
        ("search=VEC-IC-2025ABCDEF000001", ["Grace Hopper"]),
        ("search=vec-ic-2025abcdef", ["Ada Lovelace", "Grace Hopper"]),
        ("search=2025ABCDEF000000", ["Ada Lovelace"]),
        ("search=100%25", ["Alan Turing"]),  # % and _ are letters, not wildcards
        ("search=%25", ["Alan Turing"]),
        ("search=alan_t", ["Alan Turing"]),
        ("search=_", ["Alan Turing"]),
        ("search=nobody", []),
        ("search=bachelor&status=generated", ["Ada Lovelace"]),
        ("search=bachelor&status=pending", ["Mary Somerville"]),
        ("status=generated", ["Ada Lovelace", "Grace Hopper"]),
        ("applicant_email=MARY@somerville.example", ["Mary Somerville"]),
        ("applicant_email=mary@somerville.exampl", []),  # exact, not a substring
        ("search=", sorted(name for _, name, _ in PEOPLE)),
    ],
)
async def test_each_filter_matches_what_it_says(
    client: TestClient, vault: str, query: str, expected: list[str]
) -> None:
    assert await names(client, vault, query) == expected


async def test_batch_filter_and_other_institutions(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, vault: str
) -> None:
    second = await submit(client, conn, vault, [{"full_name": "Marie Curie"}])
    assert await names(client, vault, f"batch_id={second}") == ["Marie Curie"]
    assert await names(client, vault, f"batch_id={second}&search=ada") == []
    stranger = await make_token("all", institution="Beta College")
    assert await names(client, stranger, "search=a") == []
    assert await names(client, stranger, f"batch_id={second}") == []


@pytest.fixture
async def windowed(
    settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    return await aiohttp_client(create_app(dataclasses.replace(settings, search_window=100)))


@pytest.fixture
async def small_pool(
    settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    return await aiohttp_client(create_app(dataclasses.replace(settings, db_pool_max=2)))


async def test_concurrent_searches_never_wait_on_each_other_for_connections(
    small_pool: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """Each search may take a second connection; twenty at once on a pool of two must not
    end with every connection held by a request waiting for another."""
    token = await make_token("all")
    await submit(small_pool, conn, token, [{} for _ in range(5)])

    async def search(n: int) -> int:
        response = await small_pool.get(f"{BASE}?search=student {n % 5}", headers=bearer(token))
        assert response.status == 200, await response.text()
        return int((await response.json())["meta"]["total"])

    async with asyncio.timeout(30):
        totals = await asyncio.gather(*(search(n) for n in range(20)))
    assert totals == [1] * 20


async def test_a_search_lists_its_window_of_newest_matches(
    windowed: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    await submit(windowed, conn, token, [{} for _ in range(130)])  # "Student 0" .. "Student 129"

    async def get(query: str) -> tuple[dict[str, Any], bool]:
        response = await windowed.get(f"{BASE}?{query}", headers=bearer(token))
        assert response.status == 200, await response.text()
        return await response.json(), response.headers.get("X-Search-Truncated") == "true"

    body, truncated = await get("search=student&per_page=30&page=4")
    assert truncated and body["meta"]["total"] == 100 and body["meta"]["last_page"] == 4
    assert [item["full_name"] for item in body["data"]] == [
        f"Student {n}" for n in range(39, 29, -1)
    ]
    assert body["links"]["next"] is None
    body, truncated = await get("search=student&per_page=30&page=5")
    assert truncated and body["data"] == [] and body["meta"]["total"] == 100
    # under the window: exact, with no header
    body, truncated = await get("search=student 1&per_page=100")
    assert not truncated and body["meta"]["total"] == 41  # 1, 10-19, 100-129
    # no search, no window
    body, truncated = await get("per_page=100&page=2")
    assert not truncated and body["meta"]["total"] == 130 and len(body["data"]) == 30


@pytest.mark.parametrize("search", ["", "search=student&"])
async def test_totals_on_full_partial_and_empty_pages(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, search: str
) -> None:
    token = await make_token("all")
    await submit(client, conn, token, [{} for _ in range(5)])
    for page, shown in ((1, 2), (2, 2), (3, 1), (4, 0), (9, 0)):
        response = await client.get(f"{BASE}?{search}per_page=2&page={page}", headers=bearer(token))
        body = await response.json()
        assert (len(body["data"]), body["meta"]["total"]) == (shown, 5), page
        assert body["meta"]["last_page"] == 3
