"""Webhook delivery against loopback receivers: outcomes, Retry-After and the retry schedule."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime

import aiohttp
import pytest

from service.webhooks import sender
from tests.webhook_helpers import Receiver, post

# --- delivery outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [("/ok", 200), ("/no-content", 204)])
async def test_2xx_is_success(
    receiver: Receiver, session: aiohttp.ClientSession, path: str, status: int
) -> None:
    result = await post(session, receiver.url(path))
    assert (result.ok, result.status, result.error, result.gone) == (True, status, None, False)
    assert result.duration_ms >= 0


async def test_500_is_failure_with_status(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/fail"))
    assert (result.ok, result.status, result.gone) == (False, 500, False)
    assert result.error == "unexpected status 500 Internal Server Error"
    assert result.response_excerpt == "boom"


async def test_410_is_gone(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    result = await post(session, receiver.url("/gone"))
    assert (result.ok, result.status, result.gone) == (False, 410, True)


async def test_redirect_is_not_followed(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    result = await post(session, receiver.url("/redirect"))
    assert (result.ok, result.status) == (False, 302)
    assert result.error == f"redirect not followed (302 to {receiver.url('/target')})"
    assert receiver.paths() == ["/redirect"]


async def test_hanging_receiver_is_cut_at_the_timeout(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/hang"), timeout_s=0.5)
    assert (result.ok, result.status) == (False, None)
    assert result.error == "timed out after 0.5 s"
    assert 400 <= result.duration_ms < 3000


async def test_endless_response_is_read_up_to_the_cap(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/endless"), max_response_bytes=1000, timeout_s=5)
    assert (result.ok, result.status) == (True, 200)
    assert result.response_excerpt == "x" * 1000
    assert result.duration_ms < 3000


async def test_retry_after_seconds_and_date(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    busy = await post(session, receiver.url("/busy"))
    assert (busy.status, busy.retry_after_s) == (503, 120)
    throttled = await post(session, receiver.url("/throttle"))
    assert throttled.status == 429
    assert throttled.retry_after_s is not None
    assert 85 <= throttled.retry_after_s <= 91


def test_parse_retry_after_edge_cases() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert sender.parse_retry_after(None) is None
    assert sender.parse_retry_after("soon") is None
    assert sender.parse_retry_after("-5") is None
    assert sender.parse_retry_after(" 7 ") == 7
    assert sender.parse_retry_after("99999999") == sender.MAX_RETRY_AFTER_S
    assert sender.parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0
    assert sender.parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now=now) == 30


async def test_connection_refused_is_a_readable_error(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await post(session, f"http://127.0.0.1:{port}/ok")
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert result.error.startswith(f"connection to 127.0.0.1:{port} failed:")


# --- retry schedule --------------------------------------------------------------------------


def test_retry_schedule_with_jitter_and_exhaustion() -> None:
    rng = random.Random(7)
    schedule = sender.DEFAULT_RETRY_SCHEDULE_S
    for attempt, base in enumerate(schedule, start=1):
        for _ in range(50):
            delay = sender.next_retry_delay_s(attempt, rng=rng)
            assert delay is not None
            assert base * 0.8 <= delay <= base * 1.2
    assert sender.next_retry_delay_s(len(schedule) + 1, rng=rng) is None
    assert 24 * 3600 <= sum(schedule) <= 30 * 3600
    assert sender.next_retry_delay_s(2, schedule=[5], rng=rng) is None
    with pytest.raises(ValueError):
        sender.next_retry_delay_s(0)


def test_retry_jitter_spreads() -> None:
    delays = {sender.next_retry_delay_s(3, rng=random.Random(seed)) for seed in range(20)}
    assert len(delays) == 20


def test_retry_after_combination() -> None:
    assert sender.with_retry_after(30.0, None) == 30.0
    assert sender.with_retry_after(30.0, 120) == 120.0
    assert sender.with_retry_after(600.0, 120) == 600.0
    assert sender.with_retry_after(None, 120) is None


async def test_tls_failure_is_a_readable_error(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await post(session, receiver.url("/ok").replace("http://", "https://"))
    assert (result.ok, result.status) == (False, None)
    assert result.error is not None
    assert result.error.startswith("TLS error:")
    assert receiver.hits == []
