"""Every business route x every permission: only the declared one passes, the 403 names it."""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from aiohttp.test_utils import TestClient

from service import auth
from tests.conftest import TokenFactory, bearer


def business_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, concrete path, required permission) for each business route."""
    routes = []
    for route in app.router.routes():
        info = route.resource.canonical if route.resource else ""
        permission = auth.required_permission(route.handler)
        if not info.startswith("/business") or route.method == "HEAD" or permission is None:
            continue
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), info)
        routes.append((route.method, path, permission))
    return routes


async def test_route_table_declares_a_permission_for_every_business_route(
    client: TestClient,
) -> None:
    declared = business_routes(client.app)
    assert len(declared) >= 12
    for route in client.app.router.routes():
        info = route.resource.canonical if route.resource else ""
        if info.startswith("/business") and route.method != "HEAD":
            assert auth.required_permission(route.handler) is not None, info


async def test_only_the_declared_permission_passes(
    client: TestClient, make_token: TokenFactory
) -> None:
    tokens = {permission: await make_token(permission) for permission in auth.PERMISSIONS}
    for method, path, required in business_routes(client.app):
        for permission, token in tokens.items():
            response = await client.request(method, path, headers=bearer(token))
            body = await response.json()
            if required and permission != required:
                assert response.status == 403, (method, path, permission)
                assert body == {
                    "message": "Forbidden - Insufficient permissions",
                    "required_permission": required,
                }
            else:
                assert response.status not in {401, 403}, (method, path, permission, body)


async def test_every_business_route_needs_a_token(client: TestClient) -> None:
    for method, path, _ in business_routes(client.app):
        response = await client.request(method, path)
        assert response.status == 401, (method, path)
        assert await response.json() == {"message": "Unauthorized - Invalid API token"}
