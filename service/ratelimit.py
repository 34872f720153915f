"""Rate limits that hold across every service process: fixed windows counted in PostgreSQL.

Each check is one statement on a connection the caller already holds; a limit of 0 is off and
costs nothing. Buckets: the public pages per client address, failed authentication per client
address, and the business API per token.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from service import errors
from service.data import Connection
from service.data import ratelimits as ratelimit_data

WINDOW_S = 60
PUBLIC_BUCKET = "public"
FAILED_AUTH_BUCKET = "auth-failure"
TOKEN_BUCKET = "token"
FAILED_AUTH_PER_MINUTE = 30
PURGE_BATCH = 10_000
# One IPv6 client usually holds a whole /64: counting single addresses would let it rotate.
IPV6_PREFIX = 64
UNKNOWN_CLIENT = "unknown"


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    # when refused: seconds until the window ends (at least 1); 0 when allowed
    retry_after_s: int
    # requests left in this window (-1: unlimited)
    remaining: int


UNLIMITED = RateDecision(allowed=True, retry_after_s=0, remaining=-1)


async def hit(
    conn: Connection,
    *,
    bucket: str,
    subject: str,
    limit: int,
    window_s: int,
    at: datetime | None = None,
) -> RateDecision:
    """Count one request of ``subject`` in ``bucket``; ``limit`` per ``window_s`` (0: unlimited).

    ``at`` replaces the database's clock (tests).
    """
    if limit == 0:
        return UNLIMITED
    hits, reset_s = await ratelimit_data.add_hit(
        conn, bucket=bucket, subject=subject, window_s=window_s, cap=limit + 1, at=at
    )
    if hits > limit:
        return RateDecision(allowed=False, retry_after_s=max(1, reset_s), remaining=0)
    return RateDecision(allowed=True, retry_after_s=0, remaining=limit - hits)


async def enforce(
    conn: Connection, *, bucket: str, subject: str, limit: int, window_s: int = WINDOW_S
) -> RateDecision:
    """``hit``, raising ``errors.RateLimited`` (429 with Retry-After) when over the limit."""
    decision = await hit(conn, bucket=bucket, subject=subject, limit=limit, window_s=window_s)
    if not decision.allowed:
        raise errors.RateLimited(decision.retry_after_s)
    return decision


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) counts as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_subject(remote: str | None) -> str:
    """The subject counted for a client address (``request.remote``): an IPv4 address, or the
    /64 network of an IPv6 one."""
    try:
        address = unmapped(ipaddress.ip_address(remote or ""))
    except ValueError:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address.packed, IPV6_PREFIX), strict=False))
    return str(address)


async def limit_public(conn: Connection, *, remote: str | None, per_minute: int) -> RateDecision:
    """The public pages and files (``/verify``, ``/api/verify``, ``/public``), per address."""
    return await enforce(
        conn, bucket=PUBLIC_BUCKET, subject=client_subject(remote), limit=per_minute
    )


async def limit_failed_auth(
    conn: Connection, *, remote: str | None, per_minute: int = FAILED_AUTH_PER_MINUTE
) -> None:
    """After a bearer token did not resolve: count the failure, and answer 429 instead of 401
    once the address failed too often this minute. Good tokens are never counted or slowed."""
    await enforce(conn, bucket=FAILED_AUTH_BUCKET, subject=client_subject(remote), limit=per_minute)


async def limit_token(conn: Connection, *, token_id: int, per_minute: int) -> RateDecision:
    """The business API, per token (each token of an institution has its own budget)."""
    return await enforce(conn, bucket=TOKEN_BUCKET, subject=str(token_id), limit=per_minute)


async def purge_expired(conn: Connection, *, batch: int = PURGE_BATCH) -> int:
    """Delete counters of ended windows, ``batch`` at a time; returns how many were deleted.

    Call it from a maintenance loop (every minute or so) until it returns less than ``batch``.
    """
    return await ratelimit_data.purge_expired(conn, limit=batch)
