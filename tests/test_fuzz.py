"""Schemathesis against the service's own OpenAPI document, every check on, as two institutions,
on a real server and database. Plus the request bodies known to break aiohttp/asyncpg services."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import requests
from aiohttp import web

from service.app import create_app
from service.config import Settings
from tests.conftest import _replace_database
from tests.vault_helpers import fake_uploads

pytestmark = pytest.mark.slow


class LiveServer:
    """The real app on 127.0.0.1 in a thread of its own, with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(create_app(settings))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.base = ""

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=60)

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


async def seed(dsn: str) -> dict[str, str]:
    """Two institutions with all-permission tokens; A has uploads and a batch to find."""
    from service import auth
    from service.cli import issue_token
    from service.data import institutions as institution_data

    conn = await asyncpg.connect(dsn)
    try:
        tokens = {}
        for name in ("Alpha University", "Beta College"):
            row = await institution_data.create_institution(conn, name=name, email="r@x.test")
            tokens[name] = await issue_token(
                conn, institution_id=row["id"], name="fuzz", permissions=auth.PERMISSIONS
            )
        alpha = await conn.fetchval("SELECT id FROM institutions WHERE name = 'Alpha University'")
        await fake_uploads(conn, institution_id=alpha, count=20)
        return tokens
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def live(
    pg_admin_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    name = f"vault_fuzz_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_admin_dsn)
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        await admin.close()

    asyncio.run(create())
    dsn = _replace_database(pg_admin_dsn, name)
    tokens = asyncio.run(seed(dsn))
    settings = Settings(
        database_url=dsn,
        data_dir=Path(tmp_path_factory.mktemp("fuzz")),
        workers=0,
        public_base_url="http://vault.test",
        rate_limit_per_token=0,
        rate_limit_public_per_ip=0,
        rate_limit_auth_failures_per_ip=0,
        # no workers run here, so no webhook is ever sent: any URL may be registered
        webhooks_allow_http=True,
        webhooks_allow_private=True,
    )
    server = LiveServer(settings)
    server.start()
    yield server, tokens
    server.stop()
    asyncio.run(drop(pg_admin_dsn, name))


async def drop(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


# Schema-valid data can still break a business rule that no schema can state (a file_id that
# does not exist, bytes that are not a PDF, a retry of a certificate that has not failed): the
# contract answers those with 422, which valid-data checks must accept.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


def run_schemathesis(base: str, token: str, config: Path) -> subprocess.CompletedProcess[str]:
    """The CLI, every check on, deterministic and bounded; exit 0 means no failure."""
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "run",
        f"{base}/api/docs/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        "15",
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-color",
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, cwd=config.parent
    )


@pytest.mark.parametrize("institution", ["Alpha University", "Beta College"])
def test_api_conforms_to_its_schema(
    live: tuple[LiveServer, dict[str, str]], institution: str, tmp_path: Path
) -> None:
    server, tokens = live
    result = run_schemathesis(server.base, tokens[institution], tmp_path / "schemathesis.toml")
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


HOSTILE_BODIES = {
    "malformed": (b'{"entries": [', "application/json"),
    "bogus charset": (b'{"entries": []}', "application/json; charset=x-bogus"),
    "lone surrogate": (b'{"entries": [{"full_name": "\\ud800"}]}', "application/json"),
    "nul": (b'{"entries": [{"full_name": "a\\u0000b"}]}', "application/json"),
    "deep nesting": (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    "huge integer": (b'{"entries": [' + b"9" * 5000 + b"]}", "application/json"),
    "gigantic string": (
        b'{"entries": [{"full_name": "' + b"x" * 5_000_000 + b'"}]}',
        "application/json",
    ),
    "latin-1 bytes": (b'{"entries": [{"full_name": "\xe9"}]}', "application/json"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_hostile_bodies_get_a_clean_4xx(live: tuple[LiveServer, dict[str, str]], case: str) -> None:
    server, tokens = live
    body, content_type = HOSTILE_BODIES[case]
    response = requests.post(
        f"{server.base}/business/certificate-vault/bulk",
        data=body,
        headers={
            "Authorization": f"Bearer {tokens['Alpha University']}",
            "Content-Type": content_type,
        },
        timeout=60,
    )
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:200])
    assert "message" in response.json()
