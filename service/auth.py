"""API tokens and permissions: generation, hashing, and the route permission declaration."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from service.data import DATABASE_ERRORS, Connection
from service.data import institutions as institution_data

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vlt_"
TOKEN_BYTES = 32
DISPLAY_PREFIX_LENGTH = 12
TOUCH_INTERVAL_S = 60.0
TOUCH_FLUSH_S = 5.0

PERMISSIONS = (
    "certificate-vault:list",
    "certificate-vault:view",
    "certificate-vault:create",
    "certificate-vault:download",
    "certificate-vault:update",
    "batches:view",
    "webhooks:manage",
)
PERMISSION_ATTRIBUTE = "required_permission"

Handler = TypeVar("Handler", bound=Callable[..., Any])


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(
        secrets.token_bytes(TOKEN_BYTES)
    ).decode().rstrip("=")


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return token


def requires(permission: str | None) -> Callable[[Handler], Handler]:
    """Declare, beside a route's definition, the permission it needs (None: any valid token)."""
    if permission is not None and permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission}")

    def mark(handler: Handler) -> Handler:
        setattr(handler, PERMISSION_ATTRIBUTE, permission or "")
        return handler

    return mark


def required_permission(handler: object) -> str | None:
    """'' for any valid token, a permission name, or None for a public route."""
    value = getattr(handler, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token and the institution it belongs to."""

    token_id: int
    institution_id: int
    institution: dict[str, Any]
    permissions: frozenset[str]


async def authenticate(conn: Connection, token: str) -> tuple[Principal, bool] | None:
    """Resolve a token; also say whether its last_used_at is stale enough to refresh."""
    row = await institution_data.find_token(conn, token_hash=hash_token(token))
    if row is None:
        return None
    principal = Principal(
        token_id=row["token_id"],
        institution_id=row["id"],
        institution={name: row[name] for name in institution_data.INSTITUTION_FIELDS},
        permissions=frozenset(row["permissions"]),
    )
    return principal, bool(row["touch_due"])


class TokenToucher:
    """Collects used token ids and writes last_used_at in one statement every few seconds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._due: set[int] = set()

    def touch(self, token_id: int) -> None:
        self._due.add(token_id)

    async def flush(self) -> None:
        if not self._due:
            return
        ids, self._due = list(self._due), set()
        async with self._pool.acquire() as conn:
            await institution_data.touch_tokens(conn, token_ids=ids)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_FLUSH_S)
            try:
                await self.flush()
            except DATABASE_ERRORS as exc:
                log.warning("could not record token use: %s", exc)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TokenToucher]:
        task = asyncio.create_task(self.run(), name="token-toucher")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(*DATABASE_ERRORS):
                await self.flush()
