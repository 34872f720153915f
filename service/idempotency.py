"""``Idempotency-Key`` for POST requests: a retried request gets the first response back.

A key belongs to one institution and lives 24 hours. The first request records the key
``in_flight`` in its own short transaction; its response is recorded in the same transaction
that commits its effects, so a crash can never leave effects without the recorded response.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from service import errors
from service.data import Connection
from service.data import idempotency as key_data

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
HEADER = "Idempotency-Key"
TAKEN_OVER = "This Idempotency-Key was taken over by a later request; retry to get its response."


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key; record its response inside the effects' transaction."""

    institution_id: int
    key: str
    token: uuid.UUID

    async def record(self, conn: Connection, *, status: int, body: dict[str, Any]) -> None:
        recorded = await key_data.complete(
            conn,
            institution_id=self.institution_id,
            key=self.key,
            claim_token=self.token,
            status=status,
            body=body,
        )
        if not recorded:  # another request took the key over: roll this one back
            raise errors.Conflict(TAKEN_OVER)

    async def release(self, pool: asyncpg.Pool) -> None:
        """The request failed before any effect: forget the key, so a corrected retry works."""
        async with pool.acquire() as conn:
            await key_data.delete(
                conn, institution_id=self.institution_id, key=self.key, claim_token=self.token
            )


def parse_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not KEY_PATTERN.fullmatch(raw):
        raise errors.FieldValidationError.single(
            HEADER, "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
        )
    return raw


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


async def claim(
    pool: asyncpg.Pool, *, institution_id: int, key: str, body: bytes
) -> Claim | Replay:
    """Own the key, or get the first response back; 409 while the first is still running."""
    digest = request_hash(body)
    async with pool.acquire() as conn:
        row = await key_data.insert_or_get(
            conn, institution_id=institution_id, key=key, request_hash=digest
        )
    if row["inserted"]:
        return Claim(institution_id, key, row["claim_token"])
    if bytes(row["request_hash"]) != digest:
        raise errors.Unprocessable(
            "This Idempotency-Key was already used with a different request body."
        )
    if row["state"] == "done":
        return Replay(row["response_status"], row["response_body"])
    raise errors.Conflict(
        "A request with this Idempotency-Key is still being processed; retry shortly."
    )
