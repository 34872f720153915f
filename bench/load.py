"""Mixed open-model load on a running service (workers on) for a fixed time: per-route throughput,
p50/p95/p99 latency from each request's scheduled arrival, errors, and the service's RSS.

    .venv/bin/python -m bench.load [--duration 60] [--rate 40] [--mix upload=15,...] [--dsn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    Service,
    cloned_uploads,
    connection,
    load_average,
    make_institution_token,
    percentile,
    private_database,
    service_process,
)
from bench.upload import padded_pdf
from tests.samples import make_pdf

VAULT = "/business/certificate-vault"
# relative weights of the routes; --rate scales them to arrivals per second
DEFAULT_MIX = "upload=15,bulk=0.5,poll=15,page=15,search=10,detail=20,verify=24.5"
LABELS = {
    "upload": "POST upload-file",
    "bulk": "POST bulk",
    "poll": "GET batches/{id}",
    "page": "GET list",
    "search": "GET list ?search=",
    "detail": "GET {uuid}",
    "verify": "GET /verify/{ref}",
}


@dataclass
class Request:
    method: str
    path: str
    expected: int
    unknown_id: bool = False  # an id made up because none is known yet: 404 is then right
    public: bool = False
    body: Any = None
    upload: bytes | None = None
    on_success: Callable[[dict[str, Any]], None] | None = None

    def options(self) -> dict[str, Any]:
        if self.upload is None:
            return {"json": self.body} if self.body is not None else {}
        form = aiohttp.FormData()
        form.add_field("file", io.BytesIO(self.upload), filename="cert.pdf")
        return {"data": form}


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    unknown: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, request: Request, status: int, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        if status == request.expected:
            self.ok += 1
        elif status == 404 and request.unknown_id:
            self.unknown += 1
        else:
            self.errors[f"HTTP {status}"] += 1

    @property
    def count(self) -> int:
        return self.ok + self.unknown + sum(self.errors.values())


@dataclass
class Traffic:
    """Builds each route's next request from the ids known so far."""

    rng: random.Random
    pdf: bytes
    entries: int
    stock: list[str]  # cloned upload rows: bulk entries beyond the run's own uploads
    uploaded: list[str] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    certificate_ids: list[str] = field(default_factory=list)
    reference_ids: list[str] = field(default_factory=list)
    made: int = 0  # bulk entries built so far

    def upload(self) -> Request:
        def keep(body: dict[str, Any]) -> None:
            self.uploaded.append(body["data"]["file_id"])

        return Request("POST", f"{VAULT}/upload-file", 201, upload=self.pdf, on_success=keep)

    def bulk(self) -> Request:
        file_ids = self.uploaded[: self.entries]
        del self.uploaded[: self.entries]
        missing = self.entries - len(file_ids)
        file_ids += self.stock[:missing]
        del self.stock[:missing]
        entries = [self._entry(file_id) for file_id in file_ids]

        def keep(body: dict[str, Any]) -> None:
            self.batch_ids.append(body["data"]["batch_id"])

        return Request("POST", f"{VAULT}/bulk", 202, body={"entries": entries}, on_success=keep)

    def _entry(self, file_id: str) -> dict[str, str]:
        n = self.made = self.made + 1
        return {
            "certificate_title": "Certificate of Completion",
            "full_name": f"Load Student {n}",
            "applicant_email": f"load{n}@example.com",
            "file_id": file_id,
            "issue_date": "2025-06-01",
        }

    def poll(self) -> Request:
        batch_id, unknown = self._pick(self.batch_ids[-20:], str(uuid.uuid4()))
        return Request("GET", f"{VAULT}/batches/{batch_id}", 200, unknown_id=unknown)

    def page(self) -> Request:
        return Request("GET", f"{VAULT}?page={self.rng.randint(1, 3)}&per_page=15", 200)

    def search(self) -> Request:
        n = self.rng.randint(1, max(1, self.made))
        terms = [f"Load Student {n}", f"load{n}@example.com", *self.reference_ids[-1:]]
        return Request("GET", f"{VAULT}?search={self.rng.choice(terms)}", 200)

    def detail(self) -> Request:
        certificate_id, unknown = self._pick(self.certificate_ids, str(uuid.uuid4()))
        return Request("GET", f"{VAULT}/{certificate_id}", 200, unknown_id=unknown)

    def verify(self) -> Request:
        made_up = f"VEC-IC-2025{self.rng.getrandbits(52):013X}"
        reference_id, unknown = self._pick(self.reference_ids, made_up)
        return Request("GET", f"/verify/{reference_id}", 200, unknown_id=unknown, public=True)

    def _pick(self, known: list[str], made_up: str) -> tuple[str, bool]:
        return (self.rng.choice(known), False) if known else (made_up, True)


def arrivals(
    rates: dict[str, float], duration: float, rng: random.Random
) -> Iterator[tuple[float, str]]:
    """(seconds from start, route) of a Poisson process per route, merged."""
    kinds, weights = list(rates), list(rates.values())
    at = rng.expovariate(sum(weights))
    while at < duration:
        yield at, rng.choices(kinds, weights)[0]
        at += rng.expovariate(sum(weights))


@dataclass
class Run:
    service: Service
    token: str
    traffic: Traffic
    slots: asyncio.Semaphore
    tallies: dict[str, Tally]
    schedule: random.Random  # its own generator: the arrivals do not depend on the answers
    waited: int = 0  # arrivals that found every slot taken and queued in the client

    async def fire(self, session: aiohttp.ClientSession, kind: str, scheduled: float) -> None:
        request = getattr(self.traffic, kind)()
        tally = self.tallies[kind]
        self.waited += self.slots.locked()
        try:
            async with self.slots:
                status, payload = await self.send(session, request)
        except TimeoutError:
            tally.errors["timeout"] += 1
            return
        except aiohttp.ClientError as exc:
            tally.errors[type(exc).__name__] += 1
            return
        except asyncio.CancelledError:
            tally.errors["unanswered at the end"] += 1
            raise
        tally.record(request, status, (asyncio.get_running_loop().time() - scheduled) * 1000)
        if status == request.expected and request.on_success is not None:
            request.on_success(json.loads(payload))

    async def send(self, session: aiohttp.ClientSession, request: Request) -> tuple[int, bytes]:
        headers = {} if request.public else {"Authorization": f"Bearer {self.token}"}
        url = self.service.base + request.path
        options = request.options()
        async with session.request(request.method, url, headers=headers, **options) as response:
            return response.status, await response.read()

    async def drive(
        self, rates: dict[str, float], duration: float, timeout: float, *, first: Iterable[str] = ()
    ) -> None:
        """Fire ``first`` at once, then every arrival at its scheduled time whatever the answers;
        wait up to ``timeout`` s for the last ones and cancel what is left (counted as errors)."""
        loop = asyncio.get_running_loop()
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            start, tasks = loop.time(), set()
            schedule = arrivals(rates, duration, self.schedule)
            for at, kind in itertools.chain(((0.0, kind) for kind in first), schedule):
                await asyncio.sleep(max(0.0, start + at - loop.time()))
                tasks.add(asyncio.create_task(self.fire(session, kind, start + at)))
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)


class Watch:
    """What a client would learn by itself, read from the database once a second: certificate
    ids, reference ids of generated certificates; and the service's RSS, ten times a second."""

    def __init__(self, dsn: str, institution_id: int, service: Service) -> None:
        self.dsn, self.institution_id, self.service = dsn, institution_id, service
        self.rss_peak_kb = self.tree_peak_kb = 0

    async def statuses(self) -> Counter[str]:
        async with connection(self.dsn) as conn:
            rows = await conn.fetch(
                "SELECT status, count(*) FROM certificates WHERE institution_id = $1"
                " GROUP BY status",
                self.institution_id,
            )
        return Counter({row[0]: row[1] for row in rows})

    async def ids(self, traffic: Traffic) -> None:
        async with connection(self.dsn) as conn:
            while True:
                traffic.certificate_ids = await self.newest(conn, "uuid::text", "true")
                generated = "status IN ('generated', 'revoked')"
                traffic.reference_ids = await self.newest(conn, "reference_id", generated)
                await asyncio.sleep(1)

    async def newest(self, conn: asyncpg.Connection, column: str, condition: str) -> list[str]:
        rows = await conn.fetch(
            f"SELECT {column} FROM certificates WHERE institution_id = $1 AND {condition}"
            " ORDER BY id DESC LIMIT 500",
            self.institution_id,
        )
        return [row[0] for row in rows]

    async def rss(self) -> None:
        while True:
            self.rss_peak_kb = max(self.rss_peak_kb, self.service.rss_kb())
            self.tree_peak_kb = max(self.tree_peak_kb, self.service.tree_rss_kb())
            await asyncio.sleep(0.1)


def parse_mix(text: str, rate: float) -> dict[str, float]:
    """``upload=15,bulk=0.5,...`` as arrivals per second, scaled to a total of ``rate``."""
    weights = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in LABELS:
            raise SystemExit(f"--mix: unknown route {kind!r}; known: {', '.join(LABELS)}")
        weights[kind.strip()] = float(weight)
    total = sum(weights.values())
    return {kind: rate * weight / total for kind, weight in weights.items() if weight > 0}


async def measure(service: Service, dsn: str, institution_id: int, token: str, args: Any) -> None:
    rates = parse_mix(args.mix, args.rate)
    # twice the expected number of bulk requests: Poisson counts vary
    bulks = math.ceil(2 * rates.get("bulk", 0) * (args.warmup + args.duration)) + 2
    stock = await cloned_uploads(service, dsn, token, make_pdf(), bulks * args.bulk_entries)
    pdf = padded_pdf(args.upload_kb * 1024)
    traffic = Traffic(random.Random(f"content {args.seed}"), pdf, args.bulk_entries, stock)
    watch = Watch(dsn, institution_id, service)
    background = [asyncio.create_task(watch.ids(traffic)), asyncio.create_task(watch.rss())]
    try:
        # a batch at once, so that the measured run knows batch, certificate and reference ids
        warmup = new_run(service, token, traffic, args)
        await warmup.drive(rates, args.warmup, args.timeout, first=["bulk"])
        await measured(new_run(service, token, traffic, args), watch, rates, args)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def measured(run: Run, watch: Watch, rates: dict[str, float], args: Any) -> None:
    started_load, made = load_average(), run.traffic.made
    before, cpu = await watch.statuses(), time.process_time()
    watch.rss_peak_kb = watch.tree_peak_kb = 0
    await run.drive(rates, args.duration, args.timeout)
    after, cpu = await watch.statuses(), time.process_time() - cpu
    end = (run.service.rss_kb(), run.service.tree_rss_kb())
    report(run, rates, args, started_load)
    print(
        f"  service RSS (MB): main process peak {watch.rss_peak_kb / 1024:.1f}, end"
        f" {end[0] / 1024:.1f}; with its CPU pool peak {watch.tree_peak_kb / 1024:.1f},"
        f" end {end[1] / 1024:.1f}"
    )
    print(
        f"  certificates generated during the run: {after['generated'] - before['generated']}"
        f" (bulk entries submitted in it: {run.traffic.made - made}); queued or in progress"
        f" at the end: {after['pending'] + after['processing']}; failed: {after['failed']}"
    )
    print(f"  load generator CPU {cpu:.1f} s; at the end {load_average()}")


def new_run(service: Service, token: str, traffic: Traffic, args: Any) -> Run:
    slots = asyncio.Semaphore(args.max_in_flight)
    tallies = {kind: Tally() for kind in LABELS}
    return Run(service, token, traffic, slots, tallies, random.Random(args.seed))


def report(run: Run, rates: dict[str, float], args: Any, started_load: str) -> None:
    print(
        f"load: open model, Poisson arrivals at {args.rate:g} req/s for {args.duration:g} s"
        f" after {args.warmup:g} s of warm-up (seed {args.seed}); service with"
        f" {args.workers} workers; at most {args.max_in_flight} requests in flight;"
        f" at the start {started_load}"
    )
    print(
        f"  {'route':26s} {'rate':>6s} {'n':>6s} {'req/s':>7s} {'p50 ms':>8s} {'p95 ms':>8s}"
        f" {'p99 ms':>8s} {'max ms':>8s} {'errors':>6s} {'404 unknown id':>14s}"
    )
    everything = Tally()
    for kind, tally in run.tallies.items():
        if kind in rates:
            print(row(label(kind, args), rates[kind], tally, args.duration))
        everything.latencies_ms += tally.latencies_ms
        everything.ok += tally.ok
        everything.unknown += tally.unknown
        everything.errors.update({f"{kind} {e}": n for e, n in tally.errors.items()})
    print(row("all", args.rate, everything, args.duration))
    failed = sum(everything.errors.values())
    print(
        f"  error rate {failed / max(1, everything.count):.2%} ({failed} of {everything.count})"
        f"{': ' + ', '.join(f'{e} x{n}' for e, n in everything.errors.items()) if failed else ''}"
    )
    print(f"  arrivals that waited in the client for a free slot: {run.waited}")


def label(kind: str, args: Any) -> str:
    if kind == "upload":
        return f"{LABELS[kind]} ({args.upload_kb} KB)"
    if kind == "bulk":
        return f"{LABELS[kind]} ({args.bulk_entries} entries)"
    return LABELS[kind]


def row(name: str, rate: float, tally: Tally, duration: float) -> str:
    latencies = tally.latencies_ms or [math.nan]
    figures = [percentile(latencies, q) for q in (0.5, 0.95, 0.99)] + [max(latencies)]
    return (
        f"  {name:26s} {rate:6.2f} {tally.count:6d} {tally.count / duration:7.2f}"
        + "".join(f" {figure:8.1f}" for figure in figures)
        + f" {sum(tally.errors.values()):6d} {tally.unknown:14d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60, help="seconds measured")
    parser.add_argument("--rate", type=float, default=40, help="arrivals per second, all routes")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="relative weights of the routes")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load, not measured")
    parser.add_argument("--upload-kb", type=int, default=200)
    parser.add_argument("--bulk-entries", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8, help="job workers in the service")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=30, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dsn", default=None, help="default: a private embedded PostgreSQL")
    args = parser.parse_args()
    with private_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as data_dir:
        institution_id, token = asyncio.run(make_institution_token(dsn))
        env = {"RATE_LIMIT_PUBLIC_PER_IP": "0", "RATE_LIMIT_AUTH_FAILURES_PER_IP": "0"}
        with service_process(dsn, Path(data_dir), workers=args.workers, **env) as service:
            asyncio.run(measure(service, dsn, institution_id, token, args))


if __name__ == "__main__":
    main()
