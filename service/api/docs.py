"""The OpenAPI 3.0.3 document and an offline Swagger UI (assets served by the service)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_apigami
from aiohttp import web
from aiohttp_apigami import setup_aiohttp_apispec
from aiohttp_apigami.constants import SWAGGER_DICT

from service import __version__

SPEC_URL = "/api/docs/openapi.json"
SPEC_ALIAS_URL = "/api/docs/swagger.json"
DOCS_URL = "/api/docs"
STATIC_URL = "/api/docs/static"
SWAGGER_ASSETS = Path(aiohttp_apigami.__file__).parent / "swagger_ui"
# response headers apigami's decorators cannot declare: (path, method, status) -> headers
RESPONSE_HEADERS = {
    ("/business/certificate-vault", "get", "200"): {
        "X-Search-Truncated": {
            "description": "Present (true) when a search matches more certificates than its"
            " window (SEARCH_WINDOW) lists; meta.total then counts the window.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
}
DESCRIPTION = """\
Certificate Vault: institutions hand over certificates they already issued (PDF, JPG, PNG),
in bulk or one at a time; each gets a public reference id, a QR code and barcode, a verified
PDF stamped with them, a public verification page, an email to its recipient, and webhooks.

Authorize with an API token (`vlt_...`) as a Bearer token. Errors use the bodies listed per
operation; 422 validation errors are `{"message", "errors": {field: [messages]}}`, except the
bulk endpoint's, whose `errors` is always a list of lines (`Entry N: ...`).
"""

INDEX_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Certificate Vault API</title>
  <link rel="stylesheet" type="text/css" href="{static}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{static}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{static}/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="{static}/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        url: "{spec}",
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "BaseLayout"
      }});
    }};
  </script>
</body>
</html>
"""


def _tidy(spec: dict[str, Any]) -> None:
    """Make apigami's output valid OpenAPI 3.0.3 and add what it cannot express."""
    for path_item in spec.get("paths", {}).values():
        path_item.pop("head", None)  # aiohttp's automatic HEAD twin of each GET
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.setdefault("responses", {})
                if not operation["responses"]:
                    operation["responses"]["200"] = {"description": "OK"}
                operation.pop("produces", None)
                operation.pop("consumes", None)
                if not operation.get("security"):
                    operation.pop("security", None)
    for (path, method, status), headers in RESPONSE_HEADERS.items():
        response = spec["paths"][path][method]["responses"][status]
        response.setdefault("headers", {}).update(headers)
    components = spec.setdefault("components", {})
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API token (vlt_...)"}
    }
    spec["info"]["description"] = DESCRIPTION


async def _finish_spec(app: web.Application) -> None:
    _tidy(app[SWAGGER_DICT])


async def spec_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[SWAGGER_DICT])


async def index_view(request: web.Request) -> web.Response:
    page = INDEX_PAGE.format(static=STATIC_URL, spec=SPEC_URL)
    return web.Response(text=page, content_type="text/html")


def setup_docs(app: web.Application) -> None:
    setup_aiohttp_apispec(
        app,
        title="Certificate Vault API",
        version=__version__,
        url=SPEC_URL,
        swagger_path=None,
        openapi_version="3.0.3",
        generate_spec=True,
    )
    # Runs after apigami's own on_startup hook, which builds the document.
    app.on_startup.append(_finish_spec)
    app.router.add_get(SPEC_ALIAS_URL, spec_view)
    app.router.add_get(DOCS_URL, index_view)
    app.router.add_static(STATIC_URL, SWAGGER_ASSETS)
