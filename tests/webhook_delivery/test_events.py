"""Webhook deliveries of certificate and batch events, end to end through the app's workers."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook

from service import cli
from service.app import create_app
from service.config import Settings
from service.resources import FILES
from service.webhooks import events
from tests.conftest import TokenFactory, bearer
from tests.samples import make_pdf
from tests.vault_helpers import BULK_URL, entry, remove_stored_file, single_form, upload
from tests.webhook_delivery.helpers import (
    Receiver,
    lenient,
    register,
    wait_for,
)


def received(receiver: Receiver, event: str) -> list[dict[str, Any]]:
    payloads = [hit.json() for hit in receiver.answered]
    return [p["data"] for p in payloads if p["event"] == event]


async def test_certificate_and_batch_events_end_to_end(
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    make_token: TokenFactory,
    receiver: Receiver,
    conn: asyncpg.Connection,
) -> None:
    vault = await aiohttp_client(create_app(lenient(settings, cpu_processes=2)))
    token = await make_token("all")
    hook = await register(vault, token, receiver.url("/ok"))
    good, bad = await upload(vault, token), await upload(vault, token)
    key = await remove_stored_file(vault, conn, bad)  # processing this one fails for good
    body = {"entries": [entry(good, 0), entry(bad, 1)]}
    response = await vault.post(BULK_URL, json=body, headers=bearer(token))
    batch_id = (await response.json())["data"]["batch_id"]
    await wait_for(lambda: received(receiver, events.BATCH_COMPLETED), timeout_s=60)
    # each event is a delivery job of its own: they land in any order
    await wait_for(lambda: len(received(receiver, events.CREATED)) == 2)
    await wait_for(lambda: len(received(receiver, events.APPROVED)) == 1)
    await wait_for(lambda: len(received(receiver, events.FAILED)) == 1)

    created = received(receiver, events.CREATED)
    assert {c["trigger_context"] for c in created} == {"bulk_upload"}
    assert {c["source"] for c in created} == {"vault"} and created[0]["batch_id"] == batch_id
    [approved] = received(receiver, events.APPROVED)
    reference = approved["reference_id"]
    assert approved["verification_url"] == f"http://vault.test/verify/{reference}"
    assert approved["download_path"] == (
        f"http://vault.test/business/certificate-vault/{approved['uuid']}/download"
    )
    [failed] = received(receiver, events.FAILED)
    assert "missing" in failed["error"] and failed["full_name"] == "Student 1"
    [completed] = received(receiver, events.BATCH_COMPLETED)
    assert completed["batch_id"] == batch_id and completed["status"] == "partially_completed"
    counts = ("total_certificates", "processed_certificates", "failed_certificates")
    assert [completed[c] for c in counts] == [2, 1, 1]

    await vault.app[FILES].put_bytes(key, make_pdf(), "application/pdf")
    retry = f"/business/certificate-vault/{failed['uuid']}/retry"
    assert (await vault.post(retry, headers=bearer(token))).status == 200
    await wait_for(lambda: len(received(receiver, events.BATCH_COMPLETED)) == 2, timeout_s=60)
    [retried] = received(receiver, events.RETRIED)
    assert retried["uuid"] == failed["uuid"]
    assert received(receiver, events.BATCH_COMPLETED)[1]["status"] == "completed"
    # its approval is a delivery job of its own, which may land just after the batch's
    await wait_for(lambda: len(received(receiver, events.APPROVED)) == 2)

    await revoke(settings, reference)
    await wait_for(lambda: received(receiver, events.REVOKED))
    [revoked] = received(receiver, events.REVOKED)
    assert (
        revoked["reference_id"] == reference and revoked["revocation_reason"] == "Issued in error"
    )
    for hit in receiver.hits:
        assert Webhook(hook["secret"]).verify(hit.body, hit.headers)
    # created 2, approved 2, failed, retried, batch.completed 2, revoked: each once, own id
    assert len({hit.id for hit in receiver.hits}) == len(receiver.hits) == 9


async def revoke(settings: Settings, reference: str) -> None:
    args = argparse.Namespace(certificate=reference, reason="Issued in error")
    with contextlib.redirect_stdout(io.StringIO()):
        assert await cli.cmd_certificates_revoke(args, settings) == 0


async def test_a_single_upload_is_created_with_its_context(
    vault: TestClient, make_token: TokenFactory, receiver: Receiver
) -> None:
    token = await make_token("all")
    await register(vault, token, receiver.url("/ok"), subscribed=(events.CREATED,))
    form = single_form(7)
    response = await vault.post("/business/certificate-vault", data=form, headers=bearer(token))
    assert response.status == 201, await response.text()
    await wait_for(lambda: received(receiver, events.CREATED))
    [created] = received(receiver, events.CREATED)
    assert created["trigger_context"] == "single_upload" and created["batch_id"] is None
    assert created["uuid"] == (await response.json())["data"]["uuid"]
