"""Drain benchmark: the job engine and PgQueuer emptying the same backlog on the same server.

No-op handlers, durable PostgreSQL settings (fsync, synchronous_commit, full_page_writes on),
checkpoints every 30 s, autovacuum on. Prints jobs/s overall and per segment, the checkpoints
and autovacuum runs during each drain, and the engine's idle pickup latency (enqueue commit ->
handler start). PgQueuer is optional: it runs only if importable, e.g. installed apart with
``pip install --target /tmp/pgq-lib pgqueuer`` and ``PYTHONPATH=/tmp/pgq-lib``.

Run from the repository root: ``python -m bench.queue_drain [--jobs 450000] [--dsn URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from service import db
from service.queue import Engine, EngineConfig, JobContext, JobType, enqueue, enqueue_many

CHUNK = 10_000
# more checkpoints and autovacuum runs than the defaults, so that every drain lives through them
SERVER_SETTINGS = {
    "checkpoint_timeout": "30s",
    "max_wal_size": "256MB",
    "autovacuum_naptime": "10s",
}
SHOWN = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "autovacuum",
    "autovacuum_naptime",
]


@dataclass
class Drain:
    name: str
    jobs: int
    segment: int
    done: int = 0
    started: float = 0.0
    marks: list[float] = field(default_factory=list)
    finished: float = 0.0

    def tick(self) -> None:
        self.done += 1

    async def watch(self) -> None:
        """Note the time at each segment boundary (sampled every 2 ms)."""
        self.started = time.perf_counter()
        boundaries = [k * self.segment for k in range(1, self.jobs // self.segment + 1)]
        while boundaries:
            while boundaries and self.done >= boundaries[0]:
                self.marks.append(time.perf_counter())
                boundaries.pop(0)
            await asyncio.sleep(0.002)

    def report(self) -> float:
        elapsed = self.finished - self.started
        overall = self.jobs / elapsed
        edges = [self.started, *self.marks]
        rates = [self.segment / (b - a) for a, b in itertools.pairwise(edges)]
        print(f"  {self.name}: {self.jobs} jobs in {elapsed:.1f} s, {overall:,.0f} jobs/s overall")
        print(f"  per {self.segment // 1000}k segment:", " ".join(f"{r:,.0f}" for r in rates))
        return overall


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the database ---


def with_database(dsn: str, name: str) -> str:
    head, sep, query = dsn.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}{sep}{query}"


@contextmanager
def server(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    directory = Path(tempfile.mkdtemp(prefix="queue-drain-"))
    embedded = db.EmbeddedPostgres(directory / "pg")
    admin = embedded.start()
    try:
        yield admin
    finally:
        embedded.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def configure(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name, value in SERVER_SETTINGS.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        shown = [f"{name}={await conn.fetchval(f'SHOW {name}')}" for name in SHOWN]
        print("server:", ", ".join(shown))
    finally:
        await conn.close()


async def fresh_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def fill(dsn: str, jobs: int, add: Callable[[Any, int], Awaitable[None]]) -> None:
    conn = await asyncpg.connect(dsn)  # no json codec: PgQueuer encodes its own
    try:
        started = time.perf_counter()
        for first in range(0, jobs, CHUNK):
            async with conn.transaction():
                await add(conn, min(CHUNK, jobs - first))
        elapsed = time.perf_counter() - started
        print(f"  enqueued {jobs} in {elapsed:.1f} s ({jobs / elapsed:,.0f} jobs/s)")
        await conn.execute("ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@asynccontextmanager
async def server_activity(dsn: str, table: str) -> AsyncIterator[None]:
    """Print the checkpoints and autovacuum runs that happened during the block."""
    sql = f"""SELECT (SELECT num_timed + num_requested FROM pg_stat_checkpointer),
                     autovacuum_count, vacuum_count
              FROM pg_stat_user_tables WHERE relname = '{table}'"""
    conn = await asyncpg.connect(dsn)
    try:
        before = await conn.fetchrow(sql)
        yield
        await asyncio.sleep(0.6)  # statistics are flushed to shared memory lazily
        after = await conn.fetchrow(sql)
        runs = [after[i] - before[i] for i in range(3)]
        print(
            f"  during the drain: {runs[0]} checkpoints; on {table}: {runs[1]} autovacuum", end=""
        )
        print(f" and {runs[2]} other vacuum runs")
    except asyncpg.PostgresError as exc:  # pg_stat_checkpointer is PostgreSQL 17+
        print("  (no checkpoint statistics:", exc, ")")
    finally:
        await conn.close()


# --- the job engine ---


async def engine_drain(admin_dsn: str, args: argparse.Namespace) -> float:
    dsn = await fresh_database(admin_dsn, "bench_engine")
    conn = await asyncpg.connect(dsn)
    await db.migrate(conn)
    await conn.close()
    print(f"job engine (workers={args.workers}, claim batch={args.claim_batch}):")
    await fill(dsn, args.jobs, lambda c, n: enqueue_many(c, "noop", ref_ids=range(n)))
    drain = Drain("job engine", args.jobs, args.segment)
    pings: asyncio.Queue[float] = asyncio.Queue()

    async def noop(ctx: JobContext) -> None:
        drain.tick()

    async def ping(ctx: JobContext) -> None:
        pings.put_nowait(time.perf_counter())

    config = EngineConfig(
        workers=args.workers, claim_batch=args.claim_batch, lease_s=60, timeout_s=30
    )
    types = [JobType("noop", noop), JobType("ping", ping)]
    pool = await db.create_pool(dsn, min_size=4, max_size=8, timeout_s=30)
    try:
        async with server_activity(dsn, "jobs"), Engine(pool, dsn, types, config) as engine:
            await drain.watch()
            while engine.in_flight:
                await asyncio.sleep(0.001)
            drain.finished = time.perf_counter()
        rate = drain.report()
        async with Engine(pool, dsn, types, config) as engine:
            await idle_latency(dsn, engine, pings, args.samples)
    finally:
        await pool.close()
    return rate


async def idle_latency(dsn: str, engine: Engine, pings: asyncio.Queue[float], samples: int) -> None:
    while not engine.is_listening():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    conn = await asyncpg.connect(dsn)
    latencies = []
    try:
        for _ in range(samples):
            await asyncio.sleep(random.uniform(0.02, 0.05))
            await enqueue(conn, "ping")  # autocommit: committed when it returns
            committed = time.perf_counter()
            latencies.append((await asyncio.wait_for(pings.get(), 5) - committed) * 1000)
    finally:
        await conn.close()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"  idle pickup latency over {samples}: p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms,")
    print(f"  max {max(latencies):.1f} ms ({load()})")


# --- PgQueuer ---


async def pgqueuer_drain(admin_dsn: str, args: argparse.Namespace) -> float | None:
    try:
        from pgqueuer import PgQueuer, Queries
        from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.domain.settings import DBSettings, Durability
        from pgqueuer.types import QueueExecutionMode
    except ImportError:
        print("PgQueuer: not importable, skipped (see the module docstring)")
        return None
    dsn = await fresh_database(admin_dsn, "bench_pgqueuer")
    # Its fastest durable set-up: the queue table logged, log and statistics tables unlogged
    # ("balanced"), its own autovacuum settings (`pgq autovac`).
    conn = await asyncpg.connect(dsn)
    environment = QueryBuilderEnvironment(settings=DBSettings(durability=Durability.balanced))
    queries = Queries(AsyncpgDriver(conn), qbe=environment)
    await queries.install()
    await queries.optimize_autovacuum()
    await conn.close()
    print(f"PgQueuer (tasks={args.pgq_tasks}, batch size={args.pgq_batch}, balanced durability):")

    async def add(conn: Any, n: int) -> None:
        await Queries(AsyncpgDriver(conn)).enqueue(["noop"] * n, [None] * n, [0] * n)

    await fill(dsn, args.jobs, add)
    drain = Drain("PgQueuer", args.jobs, args.segment)
    connections = [await asyncpg.connect(dsn) for _ in range(args.pgq_tasks)]
    managers = [PgQueuer(AsyncpgDriver(c)) for c in connections]
    for manager in managers:

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            drain.tick()

    try:
        async with server_activity(dsn, "pgqueuer"):
            watcher = asyncio.create_task(drain.watch())
            await asyncio.gather(
                *(m.run(batch_size=args.pgq_batch, mode=QueueExecutionMode.drain) for m in managers)
            )
            drain.finished = time.perf_counter()
            await watcher
        return drain.report()
    finally:
        for c in connections:
            await c.close()


async def one_round(admin_dsn: str, args: argparse.Namespace) -> dict[str, float | None]:
    rates: dict[str, float | None] = {}
    for name in args.order.split(","):
        if name == "engine":
            rates[name] = await engine_drain(admin_dsn, args)
        elif name == "pgqueuer" and not args.skip_pgqueuer:
            rates[name] = await pgqueuer_drain(admin_dsn, args)
        print(load())
    return rates


async def run(admin_dsn: str, args: argparse.Namespace) -> None:
    await configure(admin_dsn)
    print(load())
    ratios = []
    for number in range(1, args.rounds + 1):
        print(f"--- round {number} of {args.rounds}")
        rates = await one_round(admin_dsn, args)
        ours, theirs = rates.get("engine"), rates.get("pgqueuer")
        if ours and theirs:
            ratios.append(ours / theirs)
            print(f"job engine / PgQueuer: {ours / theirs:.2f}x")
    if len(ratios) > 1:
        print("ratios:", " ".join(f"{r:.2f}x" for r in ratios), end=", ")
        print(f"median {statistics.median(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", help="a server to use (default: a private embedded one)")
    parser.add_argument("--jobs", type=int, default=450_000)
    parser.add_argument("--segment", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2000, help="engine: jobs in flight")
    parser.add_argument("--claim-batch", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200, help="idle latency samples")
    parser.add_argument("--pgq-tasks", type=int, default=3, help="PgQueuer dequeue tasks")
    parser.add_argument("--pgq-batch", type=int, default=100, help="PgQueuer batch size")
    parser.add_argument("--order", default="pgqueuer,engine")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the drains, same server")
    parser.add_argument("--skip-pgqueuer", action="store_true")
    parser.add_argument("--uvloop", action="store_true", help="run both on uvloop")
    args = parser.parse_args()
    with server(args.dsn) as admin_dsn:
        if args.uvloop:
            import uvloop

            uvloop.run(run(admin_dsn, args))
        else:
            asyncio.run(run(admin_dsn, args))


if __name__ == "__main__":
    main()
