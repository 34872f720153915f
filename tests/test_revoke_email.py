"""Revoking a certificate whose email is still waiting (SMTP down, say) cancels that email."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient

from service import cli
from service.app import create_app
from service.config import Settings
from service.data import emails as email_data
from service.jobs import enqueue_emails
from tests.conftest import TokenFactory, bearer
from tests.queue_helpers import queue_empty, wait_until
from tests.vault_helpers import BULK_URL, entry, fake_uploads, institution_id


async def test_a_revoked_certificates_pending_email_is_never_sent(
    client: TestClient,
    make_token: TokenFactory,
    conn: asyncpg.Connection,
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> None:
    token = await make_token("all")
    [file_id] = await fake_uploads(conn, institution_id=await institution_id(conn), count=1)
    response = await client.post(
        BULK_URL, json={"entries": [entry(file_id)]}, headers=bearer(token)
    )
    assert response.status == 202
    # generated, its email waiting in the outbox with its job (no worker has run yet)
    certificate_id = await conn.fetchval(
        "UPDATE certificates SET status = 'generated', reference_id = 'VEC-IC-20250123456789ABC',"
        " generated_at = now() RETURNING id"
    )
    await conn.execute("DELETE FROM jobs")
    outbox_ids = await email_data.add_to_outbox(
        conn, certificate_ids=[certificate_id], message_ids=["m@vault.test"]
    )
    assert len(outbox_ids) == 1
    await enqueue_emails(conn, outbox_ids=outbox_ids)

    args = argparse.Namespace(certificate="VEC-IC-20250123456789ABC", reason="Wrong person")
    with contextlib.redirect_stdout(io.StringIO()):
        assert await cli.cmd_certificates_revoke(args, settings) == 0
    outbox = await conn.fetchrow("SELECT status, error FROM email_outbox")
    assert outbox["status"] == "cancelled" and "revoked" in outbox["error"]

    await aiohttp_client(create_app(settings.with_overrides(workers=2, poll_interval_s=0.1)))
    await wait_until(lambda: queue_empty(conn), timeout_s=30)
    assert list(Path(settings.outbox_dir).glob("*.eml")) == []
    assert await conn.fetchval("SELECT status FROM email_outbox") == "cancelled"
