"""Webhook endpoints API: registration and its validation, reads, delete, test ping, isolation.

No delivery is attempted here (workers are off); see test_webhook_delivery.py for those.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from service.data import webhooks as webhook_data
from service.webhooks import events
from tests.conftest import TokenFactory, bearer

URL = "/business/webhooks"
TARGET = "https://hooks.example.com/vault"
NOT_FOUND_ID = "00000000-0000-4000-8000-000000000000"


async def create(client: TestClient, token: str, status: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"url": TARGET, "events": [events.CREATED, events.APPROVED], **body}
    response = await client.post(URL, json=payload, headers=bearer(token))
    result: dict[str, Any] = await response.json()
    assert response.status == status, result
    return result


async def test_create_shows_the_secret_once(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("webhooks:manage")
    created = await create(
        client,
        token,
        description="ERP sync",
        events=[events.CREATED, events.APPROVED, events.CREATED],
    )
    assert created["message"] == "Webhook endpoint created"
    data = created["data"]
    assert data["secret"].startswith("whsec_") and len(data["secret"]) > 40
    assert data["url"] == TARGET and data["description"] == "ERP sync"
    assert data["events"] == [events.CREATED, events.APPROVED]  # duplicates dropped, order kept
    assert data["active"] is True and data["disabled_reason"] is None
    assert data["created_at"].endswith("Z")

    detail = await (await client.get(f"{URL}/{data['id']}", headers=bearer(token))).json()
    assert "secret" not in detail["data"]
    assert detail["data"] == {k: v for k, v in data.items() if k != "secret"}
    listing = await (await client.get(URL, headers=bearer(token))).json()
    assert [item["id"] for item in listing["data"]] == [data["id"]]
    assert "secret" not in listing["data"][0]
    assert listing["meta"]["total"] == 1 and listing["links"]["next"] is None


async def test_extra_fields_are_ignored(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    data = (
        await create(
            client, token, secret="whsec_mine", active=False, institution_id=999, id=NOT_FOUND_ID
        )
    )["data"]
    assert data["secret"] != "whsec_mine" and data["active"] is True and data["id"] != NOT_FOUND_ID
    owner = await conn.fetchval(
        "SELECT i.name FROM webhook_endpoints e JOIN institutions i ON i.id = e.institution_id"
    )
    assert owner == "Alpha University"


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"url": "http://hooks.example.com/x"}, "url", "The url must use https."),
    ({"url": "https://127.0.0.1/x"}, "url", "private, loopback or reserved"),
    ({"url": "https://10.1.2.3/x"}, "url", "private, loopback or reserved"),
    ({"url": "https://localhost/x"}, "url", "not a local one"),
    ({"url": "ftp://hooks.example.com/x"}, "url", "The url must use https."),
    ({"url": None}, "url", "The url field is required."),
    ({"events": []}, "events", "The events field must have at least 1 items."),
    ({"events": ["certificate_application.deleted"]}, "events", "unknown events"),
    ({"events": "batch.completed"}, "events", "The events field must be an array."),
    ({"events": [events.PING]}, "events", "unknown events: ping"),
    ({"description": "x" * 1001}, "description", "not be greater than 1000"),
]


async def test_invalid_bodies_are_422_on_their_field(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("webhooks:manage")
    for body, field, message in INVALID:
        result = await create(client, token, status=422, **body)
        assert list(result["errors"]) == [field], body
        assert message in result["errors"][field][0], body


async def test_body_must_be_a_json_object(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("webhooks:manage")
    response = await client.post(URL, json=[TARGET], headers=bearer(token))
    assert response.status == 422
    response = await client.post(URL, data="url=x", headers=bearer(token))
    assert response.status == 415


async def test_operator_may_allow_http_and_private_targets(
    settings: Settings,
    make_token: TokenFactory,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> None:
    lenient = settings.with_overrides(webhooks_allow_http=True, webhooks_allow_private=True)
    client = await aiohttp_client(create_app(lenient))
    token = await make_token("webhooks:manage")
    data = (await create(client, token, url="http://127.0.0.1:9/hook"))["data"]
    assert data["url"] == "http://127.0.0.1:9/hook"


async def test_delete_then_gone(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("webhooks:manage")
    endpoint_id = (await create(client, token))["data"]["id"]
    response = await client.delete(f"{URL}/{endpoint_id}", headers=bearer(token))
    assert response.status == 200
    assert await response.json() == {"message": "Webhook endpoint deleted"}
    for method in ("GET", "DELETE"):
        again = await client.request(method, f"{URL}/{endpoint_id}", headers=bearer(token))
        assert again.status == 404
        assert (await again.json())["error"] == "resource_not_found"


async def test_unknown_and_malformed_ids_are_404(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("webhooks:manage")
    for raw in (NOT_FOUND_ID, "not-a-uuid"):
        for method, suffix in (
            ("GET", ""),
            ("DELETE", ""),
            ("GET", "/deliveries"),
            ("POST", "/test"),
        ):
            response = await client.request(method, f"{URL}/{raw}{suffix}", headers=bearer(token))
            assert response.status == 404, (method, suffix)
            assert await response.json() == {
                "message": f"The requested ID {raw} was not found.",
                "error": "resource_not_found",
            }


async def test_another_institution_sees_nothing(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    alpha = await make_token("webhooks:manage")
    beta = await make_token("webhooks:manage", institution="Beta College")
    endpoint_id = (await create(client, alpha))["data"]["id"]
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/test")):
        response = await client.request(
            method, f"{URL}/{endpoint_id}{suffix}", headers=bearer(beta)
        )
        assert response.status == 404, (method, suffix)
        assert await response.json() == {
            "message": f"The requested ID {endpoint_id} was not found.",
            "error": "resource_not_found",
        }
    listing = await (await client.get(URL, headers=bearer(beta))).json()
    assert listing["data"] == [] and listing["meta"]["total"] == 0
    assert await conn.fetchval("SELECT count(*) FROM webhook_endpoints") == 1
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_permission_is_required(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("certificate-vault:view", "batches:view")
    for method, path in (("POST", URL), ("GET", URL), ("GET", f"{URL}/{NOT_FOUND_ID}")):
        response = await client.request(method, path, json={}, headers=bearer(token))
        assert response.status == 403
        assert (await response.json())["required_permission"] == "webhooks:manage"
    assert (await client.get(URL)).status == 401


async def test_ping_is_queued_and_the_log_starts_empty(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    endpoint_id = (await create(client, token))["data"]["id"]
    response = await client.post(f"{URL}/{endpoint_id}/test", headers=bearer(token))
    assert response.status == 202
    queued = await response.json()
    assert queued["message"] == "Test event queued" and queued["data"]["event"] == "ping"
    delivery = await conn.fetchrow("SELECT id, uuid::text, event, status FROM webhook_deliveries")
    assert delivery["uuid"] == queued["data"]["delivery_id"]
    assert (delivery["event"], delivery["status"]) == ("ping", "pending")
    job = await conn.fetchrow("SELECT kind, ref_id FROM jobs")
    assert (job["kind"], job["ref_id"]) == (events.DELIVER, delivery["id"])

    log = await (await client.get(f"{URL}/{endpoint_id}/deliveries", headers=bearer(token))).json()
    assert log["data"] == [] and log["meta"]["total"] == 0


async def test_a_disabled_endpoint_cannot_be_pinged(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    endpoint_id = (await create(client, token))["data"]["id"]
    await conn.execute(
        "UPDATE webhook_endpoints SET active = false, disabled_reason = '410 Gone', "
        " disabled_at = now()"
    )
    response = await client.post(f"{URL}/{endpoint_id}/test", headers=bearer(token))
    assert response.status == 409
    assert "410 Gone" in (await response.json())["message"]
    detail = (await (await client.get(f"{URL}/{endpoint_id}", headers=bearer(token))).json())[
        "data"
    ]
    assert detail["active"] is False and detail["disabled_reason"] == "410 Gone"
    assert detail["disabled_at"] is not None


async def test_endpoints_per_institution_are_capped(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("webhooks:manage")
    for n in range(20):
        await create(client, token, url=f"{TARGET}/{n}")
    refused = await create(client, token, status=422)
    assert "at most 20" in refused["message"]
    page = await (await client.get(f"{URL}?per_page=5&page=2", headers=bearer(token))).json()
    assert len(page["data"]) == 5 and page["meta"]["total"] == 20
    assert page["data"][0]["url"] == f"{TARGET}/14"  # newest first


async def test_housekeeping_purges_old_finished_deliveries_only(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("webhooks:manage")
    endpoint_id = (await create(client, token))["data"]["id"]
    for _ in range(3):
        await client.post(f"{URL}/{endpoint_id}/test", headers=bearer(token))
    old, recent, pending = [
        r["id"] for r in await conn.fetch("SELECT id FROM webhook_deliveries ORDER BY id")
    ]
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', finished_at = now() - CASE id"
        " WHEN $1 THEN interval '40 days' ELSE interval '1 day' END WHERE id = ANY($2::bigint[])",
        old,
        [old, recent],
    )
    await conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, endpoint_id, attempt, status_code, duration_ms)"
        " SELECT id, endpoint_id, 1, 200, 5 FROM webhook_deliveries"
    )
    assert await webhook_data.purge_finished(conn, older_than_s=30 * 86400) == 1
    left = await conn.fetch("SELECT id FROM webhook_deliveries ORDER BY id")
    assert [r["id"] for r in left] == [recent, pending]
    assert await conn.fetchval("SELECT count(*) FROM webhook_attempts") == 2
