"""The job engine on a real PostgreSQL: enqueue, claim plan, exactly-once completion, fencing,
graceful stop and configuration."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from service.queue import (
    CHANNEL,
    Finalizer,
    JobContext,
    JobType,
    enqueue,
    enqueue_many,
    producer,
    store,
)
from tests.queue_helpers import (
    assert_done_exactly_once,
    count,
    engine_config,
    equals,
    queue_empty,
    record_completion,
    recording_type,
    running_engine,
    sample,
    wait_until,
)

# --- enqueue and the claim plan ---


async def test_enqueue_stores_jobs(conn: asyncpg.Connection) -> None:
    job_id = await enqueue(conn, "mail", ref_id=7, payload={"to": "a@b.test"}, priority=3)
    assert await enqueue_many(conn, "pdf", ref_ids=[1, 2, 3]) == 3
    assert await enqueue_many(conn, "hook", ref_ids=[4, 5], payloads=[{"n": 4}, None]) == 2
    assert await enqueue_many(conn, "pdf", ref_ids=[]) == 0
    rows = await conn.fetch(
        "SELECT id, kind, ref_id, payload, state, priority, attempts, max_attempts FROM jobs"
        " ORDER BY id"
    )
    assert [(r["kind"], r["ref_id"], r["payload"]) for r in rows] == [
        ("mail", 7, {"to": "a@b.test"}),
        ("pdf", 1, None),
        ("pdf", 2, None),
        ("pdf", 3, None),
        ("hook", 4, {"n": 4}),
        ("hook", 5, None),
    ]
    assert rows[0]["id"] == job_id and rows[0]["priority"] == 3
    assert {(r["state"], r["attempts"], r["max_attempts"]) for r in rows} == {(0, 0, None)}
    with pytest.raises(ValueError, match="same length"):
        await enqueue_many(conn, "hook", ref_ids=[1, 2], payloads=[{}])


async def test_one_notification_per_enqueue_call(conn: asyncpg.Connection, dsn: str) -> None:
    listener = await asyncpg.connect(dsn)
    received: list[str] = []
    await listener.add_listener(CHANNEL, lambda *args: received.append(args[2]))
    try:
        calls: list[Callable[[], Any]] = [
            lambda: enqueue_many(conn, "pdf", ref_ids=range(1000)),
            lambda: enqueue_many(conn, "pdf", ref_ids=range(500), payloads=[{}] * 500),
            lambda: enqueue(conn, "pdf", ref_id=1),
            lambda: producer.enqueue_select(
                conn, "pdf", "SELECT g FROM generate_series(1, $2::int) AS g", 300
            ),
        ]
        for call in calls:
            received.clear()
            async with conn.transaction():
                await call()
            await asyncio.sleep(0.2)
            assert received == [CHANNEL]
    finally:
        await listener.close()
    assert await count(conn, "SELECT count(*) FROM jobs") == 1801
    assert await count(conn, "SELECT max(ref_id) FROM jobs WHERE id > 1501") == 300


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


async def test_claim_uses_the_ready_index(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO jobs (kind, ref_id) SELECT 'pdf', g FROM generate_series(1, 50000) g"
    )
    await conn.execute("ANALYZE jobs")
    await conn.execute(
        f"PREPARE claim (int, text[], float8, text, bool, int, float8) AS {store.CLAIM}"
    )
    # custom plans (the first executions) and the generic plan the server may switch to later,
    # taking every priority and leaving background jobs waiting
    for mode, priorities in itertools.product(
        ("force_custom_plan", "force_generic_plan"),
        (f"{store.ALL_PRIORITIES}, 0", f"{store.BACKGROUND + 1}, 60"),
    ):
        await conn.execute(f"SET plan_cache_mode = {mode}")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE claim (100, '{{pdf}}', 30, 'w1', true, {priorities})"
        )
        nodes = _plan_nodes(plan[0]["Plan"])
        indexes = {n.get("Index Name") for n in nodes}
        assert {"ix__jobs__ready", "ix__jobs__running", "pk__jobs"} <= indexes, mode
        assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], mode
        ready_scans = [n for n in nodes if n.get("Index Name") == "ix__jobs__ready"]
        # the priority bound is a condition of the index scan: jobs below it are not visited
        assert all("priority" in n.get("Index Cond", "") for n in ready_scans), (mode, plan)


async def test_a_deferring_claim_does_not_visit_waiting_background_jobs(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute(
        "INSERT INTO jobs (kind, ref_id, priority)"
        " SELECT 'mail', g, $1 FROM generate_series(1, 50000) g",
        store.BACKGROUND,
    )
    await conn.execute(
        "INSERT INTO jobs (kind, ref_id, priority, run_at)"
        " SELECT 'mail', g, $1, now() - interval '1 hour' FROM generate_series(1, 3) g",
        store.BACKGROUND,
    )
    await conn.execute("INSERT INTO jobs (kind, ref_id) VALUES ('pdf', 1), ('pdf', 2)")
    await conn.execute("ANALYZE jobs")
    explain = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {store.CLAIM}"
    args = (100, ["pdf", "mail"], 30, "w1", False, store.BACKGROUND + 1, 60)
    tx = conn.transaction()
    await tx.start()
    try:
        plan = await conn.fetchval(explain, *args)
    finally:
        await tx.rollback()
    root = plan[0]["Plan"]
    assert root["Actual Rows"] == 5  # the three overdue emails and the two foreground jobs
    scans = [n for n in _plan_nodes(root) if n.get("Index Name") == "ix__jobs__ready"]
    pages = sum(n["Shared Hit Blocks"] + n["Shared Read Blocks"] for n in scans)
    # the 50,000 waiting emails fill some 250 index pages: the scans end before them (with a
    # range on the priority, PostgreSQL 15 read all of them; 18's skip scan would not)
    assert pages < 30, (pages, plan)


# --- exactly once ---


@pytest.mark.parametrize(("engines", "jobs"), [(1, 1), (2, 2), (4, 64), (3, 6000)])
async def test_each_job_completes_exactly_once(
    conn: asyncpg.Connection, dsn: str, done_table: None, engines: int, jobs: int
) -> None:
    await enqueue_many(conn, "record", ref_ids=range(jobs))
    registries = [CollectorRegistry() for _ in range(engines)]
    async with contextlib.AsyncExitStack() as stack:
        for registry in registries:
            await stack.enter_async_context(
                running_engine(dsn, [recording_type()], registry=registry, workers=64)
            )
        await wait_until(lambda: queue_empty(conn), timeout_s=60)
    await assert_done_exactly_once(conn, range(jobs))
    completed = [sample(r, "vault_jobs_completed_total", "record") for r in registries]
    assert sum(completed) == jobs
    if jobs >= 1000:
        assert all(completed), completed  # every engine took a share


async def test_expired_lease_is_reclaimed_and_the_late_ack_refused(
    conn: asyncpg.Connection, dsn: str, done_table: None
) -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(ctx: JobContext) -> Finalizer:
        started.set()
        await release.wait()
        return record_completion(ctx, "A")

    registry = CollectorRegistry()
    # A's heartbeat (every 10 s) does not come round during the test.
    async with running_engine(
        dsn, [JobType("t", slow)], registry=registry, lease_s=30, timeout_s=20
    ):
        await enqueue(conn, "t", ref_id=1)
        await asyncio.wait_for(started.wait(), 5)
        # As if A's heartbeats had stopped getting through.
        await conn.execute("UPDATE jobs SET locked_until = now() - interval '1 s'")
        async with running_engine(dsn, [recording_type("t", worker="B")]):
            await wait_until(lambda: queue_empty(conn))
        release.set()
        await wait_until(lambda: equals(sample(registry, "vault_jobs_stale_acks_total", "t"), 1))
    rows = await conn.fetch("SELECT worker, attempt FROM queue_test_done")
    assert [(r["worker"], r["attempt"]) for r in rows] == [("B", 2)]
    assert sample(registry, "vault_jobs_completed_total", "t") == 0


async def test_heartbeat_cancels_a_job_whose_lease_was_lost(
    conn: asyncpg.Connection, dsn: str
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry = CollectorRegistry()
    async with running_engine(dsn, [JobType("t", forever)], registry=registry) as engine:
        await enqueue(conn, "t")
        await asyncio.wait_for(started.wait(), 5)
        # Another worker's claim: the row now carries a token this engine does not hold.
        await conn.execute("UPDATE jobs SET lease_token = nextval('jobs_lease_token_seq')")
        await asyncio.wait_for(cancelled.wait(), 3)  # the heartbeat runs every lease/3 = 1 s
        assert engine.in_flight == 0
        assert sample(registry, "vault_jobs_stale_acks_total", "t") == 1
    assert await count(conn, "SELECT count(*) FROM jobs WHERE state = 1") == 1


# --- graceful stop ---


async def test_stop_lets_a_running_job_finish(
    conn: asyncpg.Connection, dsn: str, done_table: None
) -> None:
    started = asyncio.Event()

    async def run(ctx: JobContext) -> Finalizer:
        started.set()
        await asyncio.sleep(0.5)
        return record_completion(ctx, "w")

    async with running_engine(dsn, [JobType("t", run)], drain_timeout_s=5):
        await enqueue(conn, "t", ref_id=1)
        await asyncio.wait_for(started.wait(), 5)
    await assert_done_exactly_once(conn, [1])
    assert await queue_empty(conn)


async def test_stop_gives_unfinished_jobs_back_without_using_an_attempt(
    conn: asyncpg.Connection, dsn: str
) -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def stuck(ctx: JobContext) -> None:
        started.append(ctx.job_id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(ctx.job_id)
            raise

    await enqueue_many(conn, "t", ref_ids=range(3))
    engine_cm = running_engine(dsn, [JobType("t", stuck)], workers=2, drain_timeout_s=0.3)
    async with engine_cm:
        await wait_until(lambda: equals(len(started), 2))
    assert sorted(cancelled) == sorted(started)
    rows = await conn.fetch("SELECT state, attempts, lease_token, worker_id FROM jobs")
    assert [tuple(r) for r in rows] == [(0, 0, None, None)] * 3


# --- configuration ---


def test_a_timeout_as_long_as_the_lease_is_refused() -> None:
    async def run(ctx: JobContext) -> None:
        return None

    config = engine_config(lease_s=3.0, timeout_s=2.0)
    with pytest.raises(ValueError, match="shorter than lease"):
        config.check([JobType("t", run, timeout_s=3.0)])
    with pytest.raises(ValueError, match="unique"):
        config.check([JobType("t", run), JobType("t", run)])
    assert config.heartbeat_s == 1.0
