"""One webhook delivery attempt (POST, no redirects, bounded time and read) and the retry schedule.

``deliver`` never raises for network trouble: every outcome is a ``DeliveryResult`` to record.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from service.webhooks import ssrf

# About 27.7 hours in total over 11 attempts (the first one plus one per step).
DEFAULT_RETRY_SCHEDULE_S: tuple[int, ...] = (
    10, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200,
)  # fmt: skip
RETRY_JITTER = 0.2
MAX_RETRY_AFTER_S = 24 * 3600
MAX_LOCATION_CHARS = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """What one attempt achieved; ``status`` is None when no HTTP response arrived."""

    ok: bool
    status: int | None
    duration_ms: int
    error: str | None
    retry_after_s: int | None
    response_excerpt: str
    gone: bool


async def deliver(
    session: aiohttp.ClientSession,
    *,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float = 10.0,
    max_response_bytes: int = 64 * 1024,
) -> DeliveryResult:
    """POST ``body`` to ``url`` once; any 2xx is success, a 3xx is a failure (not followed)."""
    started = time.monotonic()
    try:
        async with session.post(
            url,
            data=body,
            headers=dict(headers),
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            excerpt = await _read_capped(response, max_response_bytes)
            return _result_from_response(response, excerpt, _elapsed_ms(started))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return DeliveryResult(
            ok=False,
            status=None,
            duration_ms=_elapsed_ms(started),
            error=describe_error(exc, timeout_s=timeout_s),
            retry_after_s=None,
            response_excerpt="",
            gone=False,
        )


def describe_error(exc: BaseException, *, timeout_s: float) -> str:
    """A short, readable reason for an attempt that got no HTTP response."""
    forbidden = _find_cause(exc, ssrf.ForbiddenDestination)
    if forbidden is not None:
        return str(forbidden)
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            f"connection to {exc.host}:{exc.port} failed: {exc.os_error.strerror or exc.os_error}"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without a response"
    return f"request failed: {type(exc).__name__}: {exc}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = math.ceil((when - (now or datetime.now(UTC))).total_seconds())
    return min(max(seconds, 0), MAX_RETRY_AFTER_S)


def next_retry_delay_s(
    attempt: int, *, schedule: Sequence[int] | None = None, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), ±20 % jitter.

    None when the schedule is used up: the delivery has failed for good.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    steps = DEFAULT_RETRY_SCHEDULE_S if schedule is None else schedule
    if attempt > len(steps):
        return None
    uniform = rng.uniform if rng is not None else random.uniform
    return steps[attempt - 1] * uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def with_retry_after(backoff_s: float | None, retry_after_s: int | None) -> float | None:
    """Honour a receiver's Retry-After: never retry sooner than it asked, never past exhaustion."""
    if backoff_s is None or retry_after_s is None:
        return backoff_s
    return max(backoff_s, float(retry_after_s))


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> str:
    """At most ``limit`` bytes of the body; a body that stalls or breaks keeps what arrived."""
    chunks: list[bytes] = []
    remaining = limit
    # The status line already decided the outcome; the excerpt is best effort.
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        while remaining > 0:
            chunk = await response.content.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _result_from_response(
    response: aiohttp.ClientResponse, excerpt: str, duration_ms: int
) -> DeliveryResult:
    status = response.status
    ok = 200 <= status < 300
    return DeliveryResult(
        ok=ok,
        status=status,
        duration_ms=duration_ms,
        error=None if ok else _status_error(response),
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
        response_excerpt=excerpt,
        gone=status == 410,
    )


def _status_error(response: aiohttp.ClientResponse) -> str:
    location = response.headers.get("Location")
    if 300 <= response.status < 400 and location:
        return f"redirect not followed ({response.status} to {location[:MAX_LOCATION_CHARS]})"
    if response.status == 410:
        return "endpoint gone (410)"
    return f"unexpected status {response.status} {response.reason or ''}".rstrip()


def _find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of ``kind`` among ``exc`` and its causes (aiohttp wraps OS errors)."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: cause chains can loop through __context__
        if seen is None or isinstance(seen, kind):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
