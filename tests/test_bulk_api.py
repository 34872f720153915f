"""``POST /business/certificate-vault/bulk``: acceptance, every 422, idempotency, tenancy."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import (
    BULK_URL,
    counts,
    entry,
    fake_uploads,
    institution_id,
    post_bulk,
)


@pytest.fixture
async def token(make_token: TokenFactory) -> str:
    return await make_token("certificate-vault:create", "batches:view", "certificate-vault:list")


async def test_bulk_is_accepted_and_committed_together(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=5)
    status, body = await post_bulk(
        client, token, {"entries": [entry(f, n) for n, f in enumerate(files)]}
    )
    assert status == 202, body
    assert body["message"] == "Bulk vault upload queued for processing"
    assert body["data"]["total"] == 5 and body["data"]["status"] == "processing"
    uuid.UUID(body["data"]["batch_id"])
    assert await counts(conn) == (1, 5, 1, 0)  # five small PDFs: one job
    rows = await conn.fetch(
        "SELECT status, entry_index, trigger_context FROM certificates ORDER BY entry_index"
    )
    assert [r["entry_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert {r["status"] for r in rows} == {"pending"}
    assert {r["trigger_context"] for r in rows} == {"bulk_upload"}
    batch = await conn.fetchrow("SELECT status, total_certificates FROM batches")
    assert tuple(batch) == ("processing", 5)


async def test_extra_fields_are_ignored_not_applied(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    hostile = entry(
        file_id, status="generated", reference_id="VEC-IC-2025AAAAAAAAAAAAA", institution_id=999
    )
    status, _ = await post_bulk(client, token, {"entries": [hostile], "institution_id": 999})
    assert status == 202
    row = await conn.fetchrow("SELECT status, reference_id, institution_id FROM certificates")
    assert row["status"] == "pending" and row["reference_id"] is None
    assert row["institution_id"] == await institution_id(conn)


FIELD_CASES = [
    ({"certificate_title": None}, "Entry 0: The certificate title field is required."),
    ({"certificate_title": "   "}, "Entry 0: The certificate title field is required."),
    (
        {"certificate_title": "x" * 256},
        "Entry 0: The certificate title field must not be greater than 255 characters.",
    ),
    ({"full_name": 42}, "Entry 0: The full name field must be a string."),
    (
        {"applicant_email": "not-an-email"},
        "Entry 0: The applicant email field must be a valid email address.",
    ),
    # valid by RFC, but no email could be sent there (SMTPUTF8, IP literal, quoted part)
    (
        {"applicant_email": "jöhn@example.com"},
        "Entry 0: The applicant email field must be a valid email address.",
    ),
    (
        {"applicant_email": "john@[192.0.2.1]"},
        "Entry 0: The applicant email field must be a valid email address.",
    ),
    (
        {"applicant_email": '"john smith"@example.com'},
        "Entry 0: The applicant email field must be a valid email address.",
    ),
    ({"file_id": "123"}, "Entry 0: The file id field must be a valid UUID."),
    (
        {"issue_date": "01-06-2025"},
        "Entry 0: The issue date field must be a valid date in the format YYYY-MM-DD.",
    ),
    (
        {"issue_date": "2025-02-30"},
        "Entry 0: The issue date field must be a valid date in the format YYYY-MM-DD.",
    ),
    (
        {"details": "d" * 1001},
        "Entry 0: The details field must not be greater than 1000 characters.",
    ),
]


@pytest.mark.parametrize(("override", "line"), FIELD_CASES)
async def test_invalid_entry_fields(
    client: TestClient, token: str, conn: asyncpg.Connection, override: dict[str, Any], line: str
) -> None:
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    status, body = await post_bulk(client, token, {"entries": [{**entry(file_id), **override}]})
    assert status == 422
    assert body == {"message": "The given data was invalid.", "errors": [line]}
    assert await counts(conn) == (0, 0, 0, 1)


async def test_every_problem_is_listed_with_its_entry(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=3)
    entries = [
        entry(files[0], 0),
        {"file_id": files[1]},
        "not an object",
        entry(files[2], 3, applicant_email="x"),
    ]
    status, body = await post_bulk(client, token, {"entries": entries})
    assert status == 422
    assert body["errors"] == [
        "Entry 1: The certificate title field is required.",
        "Entry 1: The full name field is required.",
        "Entry 1: The applicant email field is required.",
        "Entry 2: The entry must be an object.",
        "Entry 3: The applicant email field must be a valid email address.",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "The entries field is required."),
        ({"entries": []}, "The entries field must have at least 1 items."),
        ({"entries": {"a": 1}}, "The entries field must be an array."),
        ([1, 2], "The request body must be a JSON object."),
    ],
)
async def test_bad_bodies(client: TestClient, token: str, body: Any, message: str) -> None:
    """A problem with the body as a whole still has the bulk shape: ``errors`` lists lines."""
    status, payload = await post_bulk(client, token, body)
    assert status == 422
    assert payload == {"message": message, "errors": [message]}


async def test_too_many_entries(
    settings: Any, aiohttp_client: Any, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    from service.app import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(max_bulk_entries=3)))
    token = await make_token("certificate-vault:create")
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=4)
    status, body = await post_bulk(
        client, token, {"entries": [entry(f, n) for n, f in enumerate(files)]}
    )
    assert status == 422
    assert body["errors"] == ["The entries field must not have more than 3 items."]
    status, _ = await post_bulk(
        client, token, {"entries": [entry(f, n) for n, f in enumerate(files[:3])]}
    )
    assert status == 202


async def test_unresolvable_file_ids(
    client: TestClient, token: str, conn: asyncpg.Connection, make_token: TokenFactory
) -> None:
    await make_token("certificate-vault:create", institution="Beta College")
    own = await fake_uploads(conn, institution_id=await institution_id(conn), count=3)
    (foreign,) = await fake_uploads(
        conn, institution_id=await institution_id(conn, "Beta College"), count=1
    )
    await conn.execute(
        "UPDATE uploads SET expires_at = now() - interval '1 s' WHERE uuid = $1::uuid", own[1]
    )
    unknown = str(uuid.uuid4())
    entries = [
        entry(own[0], 0),
        entry(own[1], 1),
        entry(foreign, 2),
        entry(unknown, 3),
        entry(own[2], 4),
    ]
    status, body = await post_bulk(client, token, {"entries": entries})
    assert status == 422
    assert body == {
        "message": "Some file_ids could not be resolved",
        "errors": [
            f"Entry 1: file_id {own[1]} not found",
            f"Entry 2: file_id {foreign} not found",
            f"Entry 3: file_id {unknown} not found",
        ],
    }
    assert await counts(conn) == (0, 0, 0, 4)


async def test_a_consumed_file_id_cannot_be_used_again(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    (file_id,) = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    assert (await post_bulk(client, token, {"entries": [entry(file_id)]}))[0] == 202
    status, body = await post_bulk(client, token, {"entries": [entry(file_id, 9)]})
    assert status == 422
    assert body["errors"] == [f"Entry 0: file_id {file_id} not found"]


async def test_duplicates_are_refused(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=3)
    same_file = [entry(files[0], 0), entry(files[0], 1)]
    status, body = await post_bulk(client, token, {"entries": same_file})
    assert status == 422
    assert body == {
        "message": "Duplicate entries found",
        "errors": [f"Entry 1: file_id {files[0]} is also used by entry 0"],
    }
    same_person = [entry(files[1], 0), entry(files[2], 0, applicant_email="STUDENT0@example.com")]
    status, body = await post_bulk(client, token, {"entries": same_person})
    assert status == 422
    assert body["errors"] == [
        "Entry 1: duplicate of entry 0 (same applicant_email, certificate_title and issue_date)"
    ]
    assert await counts(conn) == (0, 0, 0, 3)


async def test_bulk_needs_the_create_permission(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("batches:view")
    status, body = await post_bulk(client, token, {"entries": []})
    assert status == 403 and body["required_permission"] == "certificate-vault:create"


@pytest.mark.parametrize(
    ("data", "headers", "line"),
    [
        (b"{not json", {}, "The request body is not valid JSON."),
        (b'{"entries": []}', {"Idempotency-Key": "\u00e9"}, "printable ASCII"),
    ],
)
async def test_every_bulk_422_lists_its_errors(
    client: TestClient, token: str, data: bytes, headers: dict[str, str], line: str
) -> None:
    response = await client.post(
        BULK_URL,
        data=data,
        headers={**bearer(token), "Content-Type": "application/json", **headers},
    )
    assert response.status == 422
    body = await response.json()
    assert isinstance(body["errors"], list) and len(body["errors"]) == 1
    assert line in body["errors"][0] and body["message"] == body["errors"][0]


async def test_problems_of_every_kind_are_listed_together(
    client: TestClient, token: str, conn: asyncpg.Connection
) -> None:
    """Field rules, duplicates and file resolution in one answer: the message is the first
    kind's, the lines come kind by kind; nothing is consumed."""
    files = await fake_uploads(conn, institution_id=await institution_id(conn), count=2)
    unknown = "3f0c1a52-8d1e-4c57-9a41-6a3d1f0e2b7c"
    entries = [
        entry(files[0], 0),
        entry(unknown, 1),
        entry(files[1], 2, certificate_title=""),
        entry(files[0], 3),
    ]
    status, body = await post_bulk(client, token, {"entries": entries})
    assert status == 422
    assert body == {
        "message": "The given data was invalid.",
        "errors": [
            "Entry 2: The certificate title field is required.",
            f"Entry 3: file_id {files[0]} is also used by entry 0",
            f"Entry 1: file_id {unknown} not found",
        ],
    }
    assert await counts(conn) == (0, 0, 0, 2)
