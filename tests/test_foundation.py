"""Auth, error shapes, request ids and the token endpoint, through the real app."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from tests.conftest import TokenFactory, bearer

UNAUTHORIZED = {"message": "Unauthorized - Invalid API token"}


async def test_whoami_with_a_valid_token(client: TestClient, make_token: TokenFactory) -> None:
    token = await make_token("batches:view")
    response = await client.get("/business/institution", headers=bearer(token))
    assert response.status == 200
    body = await response.json()
    assert body["data"]["institution"]["name"] == "Alpha University"
    assert body["data"]["permissions"] == ["batches:view"]
    assert "token_hash" not in str(body)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer vlt_unknown-token-value",
        "Bearer not-a-vault-token",
        "bearer",
    ],
)
async def test_bad_credentials_get_401(client: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.get("/business/institution", headers=headers)
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


async def test_token_in_query_string_is_not_accepted(
    client: TestClient, make_token: TokenFactory
) -> None:
    token = await make_token("all")
    response = await client.get(f"/business/institution?token={token}&api_token={token}")
    assert response.status == 401


async def test_revoked_token_gets_401_at_once(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    assert (await client.get("/business/institution", headers=bearer(token))).status == 200
    await conn.execute("UPDATE api_tokens SET revoked_at = now()")
    response = await client.get("/business/institution", headers=bearer(token))
    assert response.status == 401
    assert await response.json() == UNAUTHORIZED


async def test_last_used_at_is_recorded_off_the_request_path(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    token = await make_token("all")
    assert await conn.fetchval("SELECT last_used_at FROM api_tokens") is None
    for _ in range(3):
        assert (await client.get("/business/institution", headers=bearer(token))).status == 200
    # written by the background flusher, not by the requests themselves
    from service.keys import TOKEN_TOUCHER

    await client.app[TOKEN_TOUCHER].flush()
    assert await conn.fetchval("SELECT last_used_at FROM api_tokens") is not None


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = await client.get("/business/nothing-here")
    assert response.status == 404
    body = await response.json()
    assert body["error"] == "resource_not_found"
    assert "/business/nothing-here" in body["message"]


@pytest.mark.parametrize("suffix", ["", "/download", "/retry"])
async def test_a_malformed_certificate_id_is_an_unknown_id(client: TestClient, suffix: str) -> None:
    method = client.post if suffix == "/retry" else client.get
    response = await method(f"/business/certificate-vault/not-a-uuid{suffix}")
    assert response.status == 404
    assert await response.json() == {
        "message": "The requested ID not-a-uuid was not found.",
        "error": "resource_not_found",
    }
    # the fixed routes beside them are not taken for ids
    assert (await client.get("/business/certificate-vault/bulk")).status == 405


async def test_wrong_method_is_json_405(client: TestClient) -> None:
    response = await client.delete("/health/live")
    assert response.status == 405
    assert response.content_type == "application/json"
    assert "message" in await response.json()
    assert "GET" in response.headers["Allow"]


async def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32


async def test_unexpected_exception_is_a_generic_500_without_traceback(
    settings: Settings, aiohttp_client: object, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    app = create_app(settings, extra_routes=[web.get("/boom", explode)])
    client = await aiohttp_client(app)  # type: ignore[operator]
    with caplog.at_level(logging.ERROR):
        response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status == 500
    text = await response.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    assert await response.json() == {
        "message": "An unexpected error occurred. Our team has been notified.",
        "error_code": "SERVER_ERROR",
    }
    logged = [r for r in caplog.records if "req-500" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


async def test_malformed_json_and_wrong_content_type_are_clean_errors(
    settings: Settings, aiohttp_client: object
) -> None:
    from service.api.common import json_response, read_json_object

    async def echo(request: web.Request) -> web.Response:
        return json_response(await read_json_object(request))

    client = await aiohttp_client(create_app(settings, extra_routes=[web.post("/echo", echo)]))  # type: ignore[operator]
    bad = await client.post(
        "/echo", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status == 422
    assert (await bad.json())["errors"] == {"body": ["The request body is not valid JSON."]}
    not_object = await client.post("/echo", json=[1, 2])
    assert not_object.status == 422
    wrong_type = await client.post("/echo", data=b"a=b", headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 415
    assert "message" in await wrong_type.json()
    bogus_charset = await client.post(
        "/echo", data=b"{}", headers={"Content-Type": "application/json; charset=bogus-8"}
    )
    assert bogus_charset.status == 422
    lone_surrogate = await client.post(
        "/echo", data=b'{"a": "\\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert lone_surrogate.status == 422
    for escaped_nul in (b'{"a": "x\\u0000y"}', b'{"a": "x\\\\\\u0000"}'):
        nul = await client.post(
            "/echo", data=escaped_nul, headers={"Content-Type": "application/json"}
        )
        assert nul.status == 422
    # an escaped backslash followed by the text u0000 is no NUL: accepted
    text = await client.post(
        "/echo", data=b'{"a": "C:\\\\u0000 notes"}', headers={"Content-Type": "application/json"}
    )
    assert text.status == 200 and (await text.json()) == {"a": "C:\\u0000 notes"}
    deep = await client.post(
        "/echo", data=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert deep.status == 422


async def test_too_large_body_is_json_413(settings: Settings, aiohttp_client: object) -> None:
    async def read(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    client = await aiohttp_client(create_app(settings, extra_routes=[web.post("/read", read)]))  # type: ignore[operator]
    response = await client.post("/read", data=io.BytesIO(b"x" * (33 * 1024 * 1024)))
    assert response.status == 413
    assert (await response.json())["message"].startswith("The request body is larger than 32 MiB")
    # 10,000 bulk entries with every field at its longest: 18.3 MiB, under the default limit
    longest = {"certificate_title": "t" * 255, "full_name": "n" * 255, "details": "d" * 1000}
    longest |= {"applicant_email": "e" * 243 + "@example.org", "file_id": str(uuid.uuid4())}
    body = json.dumps({"entries": [longest | {"issue_date": "2025-06-01"}] * 10_000}).encode()
    assert len(body) > 18 * 1024 * 1024
    assert (await client.post("/read", data=io.BytesIO(body))).status == 200


async def test_health(client: TestClient) -> None:
    assert (await client.get("/health/live")).status == 200
    ready = await client.get("/health/ready")
    assert ready.status == 200 and await ready.json() == {"status": "ok"}


async def test_ready_is_503_when_migrations_are_pending(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    await conn.execute("DELETE FROM schema_migrations WHERE version = 1")
    response = await client.get("/health/ready")
    assert response.status == 503
    assert (await response.json())["error_code"] == "SERVICE_UNAVAILABLE"
    await asyncio.sleep(0)


async def test_failed_authentication_is_rate_limited_per_address(
    settings: Settings, aiohttp_client: object, make_token: TokenFactory
) -> None:
    limited = settings.with_overrides(rate_limit_auth_failures_per_ip=3)
    client = await aiohttp_client(create_app(limited))  # type: ignore[operator]
    good = await make_token("all")
    for _ in range(3):
        response = await client.get("/business/institution", headers=bearer("vlt_guess"))
        assert response.status == 401
    refused = await client.get("/business/institution", headers=bearer("vlt_guess"))
    assert refused.status == 429
    assert await refused.json() == {"message": "Too many requests"}
    assert int(refused.headers["Retry-After"]) >= 1
    # a valid token is never slowed down by the failures of others
    assert (await client.get("/business/institution", headers=bearer(good))).status == 200


async def test_business_api_is_rate_limited_per_token(
    settings: Settings, aiohttp_client: object, make_token: TokenFactory
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(rate_limit_per_token=2)))  # type: ignore[operator]
    first, second = await make_token("all"), await make_token("all")
    statuses = [
        (await client.get("/business/institution", headers=bearer(first))).status for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert (await client.get("/business/institution", headers=bearer(second))).status == 200
