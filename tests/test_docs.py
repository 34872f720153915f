"""The OpenAPI document and the offline Swagger UI."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate


async def test_spec_is_valid_openapi_3(client: TestClient) -> None:
    response = await client.get("/api/docs/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec["openapi"] == "3.0.3"
    validate(spec)
    assert (await (await client.get("/api/docs/swagger.json")).json()) == spec
    listed = spec["paths"]["/business/certificate-vault"]["get"]["responses"]["200"]
    assert "X-Search-Truncated" in listed["headers"]


async def test_every_business_route_is_documented_and_secured(client: TestClient) -> None:
    spec = await (await client.get("/api/docs/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/business") and route.method != "HEAD":
            assert (route.method, path) in documented
            operation = spec["paths"][path][route.method.lower()]
            assert operation["security"] == [{"bearerAuth": []}]
            assert "401" in operation["responses"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_docs_page_and_assets_are_served_locally(client: TestClient) -> None:
    page = await client.get("/api/docs")
    assert page.status == 200
    html = await page.text()
    assert "swagger-ui" in html and "validatorUrl: null" in html
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references
    for reference in references:
        assert reference.startswith("/"), f"outside reference {reference}"
        asset = await client.get(reference)
        assert asset.status == 200, reference
    assert not re.search(r"https?://", html)
