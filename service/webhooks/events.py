"""Webhook events: each is written as deliveries, and their jobs, in the transaction of the state
change it reports, so a committed change always gets its webhooks and a rolled back one none.

With no subscribed endpoint, an emit costs one indexed query that finds nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from service.data import Connection
from service.data import webhooks as webhook_data
from service.queue import producer
from service.timestamps import api_timestamp, second_timestamp

Row: TypeAlias = Mapping[str, Any] | asyncpg.Record

CREATED = "certificate_application.created"
APPROVED = "certificate_application.approved"
FAILED = "certificate_application.failed"
RETRIED = "certificate_application.retried"
REVOKED = "certificate_application.revoked"
BATCH_COMPLETED = "batch.completed"
EVENTS = (CREATED, APPROVED, FAILED, RETRIED, REVOKED, BATCH_COMPLETED)
PING = "ping"  # sent on request to one endpoint, whatever it subscribed to

DELIVER = "webhook.deliver"
FAN_OUT = "webhook.fan_out"
FAN_OUT_CHUNK = 1000


def data_timestamp(value: datetime | None) -> str | None:
    """Timestamps inside ``data``: as the API writes them."""
    return api_timestamp(value) if value else None


def body(*, event: str, delivery_uuid: uuid.UUID, created_at: datetime, data: Any) -> bytes:
    """The exact bytes sent, the same on every attempt: signatures cover them as they are."""
    payload = {
        "event": event,
        "webhook_id": str(delivery_uuid),
        "timestamp": second_timestamp(created_at),
        "data": data,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def emit(conn: Connection, *, institution_id: int, event: str, data: dict[str, Any]) -> None:
    """Queue ``event`` for every active endpoint of the institution subscribed to it.

    ``data`` must be JSON-ready (strings, numbers, booleans, None, lists, dicts).
    """
    ids = await webhook_data.insert_deliveries(
        conn, institution_id=institution_id, event=event, data=data
    )
    await _enqueue(conn, ids)


async def emit_certificate(
    conn: Connection, *, certificate_id: int, event: str, base_url: str = ""
) -> None:
    """A ``certificate_application.*`` event; its data is read from the certificate as it is now.

    ``base_url`` (the service's public URL) is needed for the links of approved and revoked.
    """
    await emit_certificates(conn, certificate_ids=[certificate_id], event=event, base_url=base_url)


async def emit_certificates(
    conn: Connection, *, certificate_ids: Sequence[int], event: str, base_url: str = ""
) -> None:
    """``emit_certificate`` for many certificates, in two statements at most."""
    ids = await webhook_data.insert_certificate_deliveries(
        conn, certificate_ids=certificate_ids, event=event, base_url=base_url
    )
    await _enqueue(conn, ids)


async def emit_batch_created(conn: Connection, *, institution_id: int, batch_id: int) -> None:
    """``created`` for every certificate of a new batch, later: one fan-out job, committed with
    the batch, writes the deliveries in chunks (the bulk transaction stays short)."""
    if await webhook_data.has_subscriber(conn, institution_id=institution_id, event=CREATED):
        # ahead of the batch's processing jobs, so "created" tends to precede "approved"
        await producer.enqueue(conn, FAN_OUT, ref_id=batch_id, priority=1)


async def emit_batch_completed(conn: Connection, batch: Row) -> None:
    """``batch.completed`` from the batch row that ``count_outcome`` returned."""
    await emit(
        conn,
        institution_id=batch["institution_id"],
        event=BATCH_COMPLETED,
        data=batch_completed_data(batch),
    )


def batch_completed_data(batch: Row) -> dict[str, Any]:
    return {
        "batch_id": str(batch["uuid"]),
        "status": batch["status"],
        "total_certificates": batch["total_certificates"],
        "processed_certificates": batch["processed_certificates"],
        "failed_certificates": batch["failed_certificates"],
        "completion_date": data_timestamp(batch["completion_date"]),
        "created_at": data_timestamp(batch["created_at"]),
    }


async def fan_out_batch(pool: asyncpg.Pool, *, batch_id: int) -> int:
    """Write the ``created`` deliveries of a batch, a chunk per transaction; how many were new.

    Safe to run again after a crash: deliveries that exist already are skipped.
    """
    written, after = 0, 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            last_id, ids = await webhook_data.insert_batch_chunk(
                conn,
                batch_id=batch_id,
                event=CREATED,
                base_url="",
                after=after,
                limit=FAN_OUT_CHUNK,
            )
            await _enqueue(conn, ids)
        written += len(ids)
        if last_id is None:
            return written
        after = last_id


async def queue_ping(conn: Connection, *, endpoint_id: int, endpoint_uuid: uuid.UUID) -> uuid.UUID:
    """A ``ping`` to one endpoint (the test route); the delivery id."""
    data = {
        "message": "This is a test event from the certificate vault.",
        "endpoint_id": str(endpoint_uuid),
    }
    row = await webhook_data.insert_ping(conn, endpoint_id=endpoint_id, data=data)
    await _enqueue(conn, [row["id"]])
    delivery_uuid: uuid.UUID = row["uuid"]
    return delivery_uuid


async def _enqueue(conn: Connection, delivery_ids: list[int]) -> None:
    await producer.enqueue_many(conn, DELIVER, ref_ids=delivery_ids)
