"""``serve --demo`` (what ``make run`` uses): a demo institution and token on first start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from service import auth
from service.cli import issue_token
from service.data import institutions as institution_data
from service.keys import POOL, SETTINGS

log = logging.getLogger(__name__)

DEMO_NAME = "Demo University"


async def demo_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with app[POOL].acquire() as conn, conn.transaction():
        existing = await institution_data.find_institution(conn, key=DEMO_NAME)
        token = None
        if existing is None:
            institution = await institution_data.create_institution(
                conn, name=DEMO_NAME, email="registrar@demo.example", address="1 Campus Way"
            )
            token = await issue_token(
                conn, institution_id=institution["id"], name="demo", permissions=auth.PERMISSIONS
            )
    lines = [
        "",
        f"  Certificate Vault is running: {settings.base_url}",
        f"  API docs (Swagger UI):        {settings.base_url}/api/docs",
    ]
    if token:
        lines += [f"  Demo API token (all permissions, shown once): {token}"]
    else:
        lines += [
            "  The demo token was shown on the first start and is not stored. For a new one:",
            f'    .venv/bin/vault-service tokens create --institution "{DEMO_NAME}"'
            " --name demo --permission all",
        ]
    lines += [
        f'  Try: curl -H "Authorization: Bearer <token>" {settings.base_url}/business/institution',
        "",
    ]
    print("\n".join(lines), flush=True)
    yield
