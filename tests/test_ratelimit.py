"""Rate limits counted in PostgreSQL: correct across processes, windows roll over, 0 is off."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import asyncpg
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, make_mocked_request

from service import db, errors, ratelimit
from service.api.common import client_address
from service.app import create_app
from service.config import ConfigError, Settings
from service.keys import SETTINGS

ClientFactory = Callable[..., Awaitable[TestClient]]
UNKNOWN = "VEC-IC-2025AAAAAAAAAAAAA"
T0 = datetime(2025, 6, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def _not_at_a_window_edge() -> None:
    """The counters' windows are the clock's minutes: a test's requests must not straddle two
    (the count would start again mid-test), so one that would start in a minute's last five
    seconds waits for the next minute."""
    into_minute = time.time() % 60
    if into_minute > 55:
        await asyncio.sleep(60 - into_minute + 0.1)


@pytest.fixture
async def limited_client(settings: Settings, aiohttp_client: ClientFactory) -> TestClient:
    return await aiohttp_client(create_app(settings.with_overrides(rate_limit_public_per_ip=3)))


@pytest.fixture
async def pools(dsn: str, conn: asyncpg.Connection) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two pools, as two service processes would have; ``conn`` has migrated the database."""
    opened = [await db.create_pool(dsn, min_size=1, max_size=10, timeout_s=10) for _ in range(2)]
    yield opened
    for pool in opened:
        await pool.close()


async def assert_too_many(response: ClientResponse) -> None:
    assert response.status == 429
    assert await response.json() == {"message": "Too many requests"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60


async def test_limit_plus_one_is_429(limited_client: TestClient) -> None:
    for _ in range(3):
        assert (await limited_client.get(f"/verify/{UNKNOWN}")).status == 404
    await assert_too_many(await limited_client.get(f"/verify/{UNKNOWN}"))


async def test_public_routes_share_one_budget(limited_client: TestClient) -> None:
    paths = (f"/verify/{UNKNOWN}", f"/api/verify/{UNKNOWN}", "/verify/malformed")
    for path in paths:
        assert (await limited_client.get(path)).status == 404
    await assert_too_many(await limited_client.get(f"/public/certificates/{UNKNOWN}/qr_code.svg"))
    await assert_too_many(await limited_client.get(f"/api/verify/{UNKNOWN}"))
    # neither the stylesheet nor the rest of the API is counted
    assert (await limited_client.get("/public/assets/verify.css")).status == 200
    assert (await limited_client.get("/health/live")).status == 200


async def test_two_processes_share_the_counter(
    settings: Settings, aiohttp_client: ClientFactory
) -> None:
    limited = settings.with_overrides(rate_limit_public_per_ip=4)
    first = await aiohttp_client(create_app(limited))
    second = await aiohttp_client(create_app(limited))
    for client in (first, second, first, second):
        assert (await client.get(f"/api/verify/{UNKNOWN}")).status == 404
    await assert_too_many(await first.get(f"/api/verify/{UNKNOWN}"))
    await assert_too_many(await second.get(f"/api/verify/{UNKNOWN}"))


async def test_next_window_is_allowed_again(
    limited_client: TestClient, conn: asyncpg.Connection
) -> None:
    for _ in range(3):
        await limited_client.get(f"/verify/{UNKNOWN}")
    await assert_too_many(await limited_client.get(f"/verify/{UNKNOWN}"))
    # a minute passes: the stored window becomes the previous one
    await conn.execute(
        "UPDATE rate_limits SET window_start = window_start - interval '60 s',"
        " expires_at = expires_at - interval '60 s'"
    )
    assert (await limited_client.get(f"/verify/{UNKNOWN}")).status == 404


async def test_zero_disables(
    settings: Settings, aiohttp_client: ClientFactory, conn: asyncpg.Connection
) -> None:
    client = await aiohttp_client(create_app(settings.with_overrides(rate_limit_public_per_ip=0)))
    for _ in range(10):
        assert (await client.get(f"/api/verify/{UNKNOWN}")).status == 404
    assert await conn.fetchval("SELECT count(*) FROM rate_limits") == 0


async def test_hit_counts_down_and_rolls_over(conn: asyncpg.Connection) -> None:
    async def at(moment: datetime) -> ratelimit.RateDecision:
        return await ratelimit.hit(conn, bucket="b", subject="s", limit=2, window_s=60, at=moment)

    assert await at(T0) == ratelimit.RateDecision(allowed=True, retry_after_s=0, remaining=1)
    assert await at(T0 + timedelta(seconds=10)) == ratelimit.RateDecision(True, 0, 0)
    refused = await at(T0 + timedelta(seconds=15.5))
    assert refused == ratelimit.RateDecision(allowed=False, retry_after_s=45, remaining=0)
    assert (await at(T0 + timedelta(seconds=59.9))).retry_after_s == 1
    assert await at(T0 + timedelta(seconds=60)) == ratelimit.RateDecision(True, 0, 1)


async def test_hit_keeps_buckets_and_subjects_apart(conn: asyncpg.Connection) -> None:
    for bucket, subject in (("a", "x"), ("a", "y"), ("b", "x")):
        decision = await ratelimit.hit(
            conn, bucket=bucket, subject=subject, limit=1, window_s=60, at=T0
        )
        assert decision.allowed


async def test_hit_with_zero_limit_touches_nothing(conn: asyncpg.Connection) -> None:
    decision = await ratelimit.hit(conn, bucket="b", subject="s", limit=0, window_s=60)
    assert decision == ratelimit.UNLIMITED
    assert await conn.fetchval("SELECT count(*) FROM rate_limits") == 0


async def test_concurrent_hits_from_two_pools_admit_exactly_the_limit(
    pools: list[asyncpg.Pool],
) -> None:
    async def one(pool: asyncpg.Pool) -> bool:
        async with pool.acquire() as conn:
            decision = await ratelimit.hit(conn, bucket="b", subject="s", limit=15, window_s=3600)
            return decision.allowed

    results = await asyncio.gather(*(one(pools[i % 2]) for i in range(40)))
    assert sum(results) == 15


async def test_counter_stops_at_limit_plus_one(conn: asyncpg.Connection) -> None:
    for _ in range(5):
        await ratelimit.hit(conn, bucket="b", subject="s", limit=2, window_s=60, at=T0)
    assert await conn.fetchval("SELECT hits FROM rate_limits") == 3


async def test_failed_auth_limit(conn: asyncpg.Connection) -> None:
    address = "203.0.113.7"
    for _ in range(3):
        await ratelimit.limit_failed_auth(conn, remote=address, per_minute=3)
    with pytest.raises(errors.RateLimited) as refused:
        await ratelimit.limit_failed_auth(conn, remote=address, per_minute=3)
    assert 1 <= refused.value.retry_after_s <= 60
    assert refused.value.body() == {"message": "Too many requests"}
    await ratelimit.limit_failed_auth(conn, remote="203.0.113.8", per_minute=3)
    await ratelimit.limit_failed_auth(conn, remote=address, per_minute=0)


async def test_failed_auth_default_is_30_per_minute(conn: asyncpg.Connection) -> None:
    for _ in range(ratelimit.FAILED_AUTH_PER_MINUTE):
        await ratelimit.limit_failed_auth(conn, remote="::1")
    with pytest.raises(errors.RateLimited):
        await ratelimit.limit_failed_auth(conn, remote="::1")


async def test_token_limit(conn: asyncpg.Connection) -> None:
    for _ in range(2):
        await ratelimit.limit_token(conn, token_id=7, per_minute=2)
    with pytest.raises(errors.RateLimited) as refused:
        await ratelimit.limit_token(conn, token_id=7, per_minute=2)
    assert refused.value.headers()["Retry-After"].isdigit()
    assert (await ratelimit.limit_token(conn, token_id=8, per_minute=2)).remaining == 1
    assert (await ratelimit.limit_token(conn, token_id=7, per_minute=0)).allowed


@pytest.mark.parametrize(
    ("remote", "subject"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("", "unknown"),
        ("not an address", "unknown"),
    ],
)
def test_client_subject(remote: str | None, subject: str) -> None:
    assert ratelimit.client_subject(remote) == subject


async def test_purge_removes_ended_windows_only(conn: asyncpg.Connection) -> None:
    for minutes_ago in (0, 2, 5):
        await ratelimit.hit(
            conn,
            bucket="b",
            subject="s",
            limit=10,
            window_s=60,
            at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        )
    assert await ratelimit.purge_expired(conn, batch=1) == 1
    assert await ratelimit.purge_expired(conn) == 1
    assert await ratelimit.purge_expired(conn) == 0
    assert await conn.fetchval("SELECT count(*) FROM rate_limits") == 1


@pytest.mark.parametrize("behind_proxy", [True, False])
async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(
    settings: Settings, aiohttp_client: ClientFactory, behind_proxy: bool
) -> None:
    proxies = (ipaddress.ip_network("127.0.0.0/8"),) if behind_proxy else ()
    limited = settings.with_overrides(rate_limit_public_per_ip=3, trusted_proxies=proxies)
    client = await aiohttp_client(create_app(limited))

    async def verify(forwarded_for: str) -> int:
        headers = {"X-Forwarded-For": forwarded_for}
        return (await client.get(f"/verify/{UNKNOWN}", headers=headers)).status

    assert [await verify("203.0.113.5") for _ in range(3)] == [404] * 3
    # a client can put anything in front; the proxy appends the address it saw
    assert await verify("198.51.100.7, 203.0.113.5") == 429
    # another client behind the same proxy has a budget of its own; without trusted proxies
    # the header is ignored, and every request comes from the proxy's address
    assert await verify("198.51.100.7") == (404 if behind_proxy else 429)


def test_trusted_proxies_setting() -> None:
    parsed = Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, ::1, 192.168.1.7"})
    assert [str(n) for n in parsed.trusted_proxies] == ["10.0.0.0/8", "::1/128", "192.168.1.7/32"]
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/33"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "203.0.113.9:51234", "203.0.113.9"),  # a port, as some balancers add
        ("10.0.0.2", "[2001:db8::1]:443, 10.0.0.7", "2001:db8::1"),
        ("::ffff:10.0.0.2", "2001:db8::5", "2001:db8::5"),  # a dual-stack proxy socket
        ("10.0.0.2", "198.51.100.1, unknown", "unknown"),  # nothing left of it is trusted
        ("10.0.0.2", "10.5.5.5, 10.0.0.9", "10.5.5.5"),  # all trusted: the first of them
        ("10.0.0.2", "", "10.0.0.2"),
        ("192.0.2.1", "203.0.113.9", "192.0.2.1"),  # not a trusted proxy: the header is ignored
    ],
)
def test_client_address_behind_proxies(peer: str, forwarded: str, client: str) -> None:
    app = web.Application()
    app[SETTINGS] = Settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 1234) if name == "peername" else default
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/verify/x", headers=headers, app=app, transport=transport)
    assert client_address(request) == client
