"""Certificates per second from 1-page PDF originals through the real service (workers on),
beside the same artifact function in a tight loop on as many processes as cores, same run.
Timed from the bulk request to the batch's ``completion_date`` (the service's clock, this
machine's: no polling interval in the figure; the uploads are made before). Rounds
alternate with the loop, each round's ratio is taken against the mean of the loops before and
after it, and the median of the rounds is the figure: a shared machine drifts, by tens of
percent within a minute some days. The queue is drained (emails sent) between rounds, and a
warm-up batch of 200 goes through first.

    .venv/bin/python -m bench.pipeline [--certificates 2000] [--rounds 3] [--workers 32] [--dsn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.artifacts_loop import run_loop
from bench.common import (
    Service,
    cloned_uploads,
    connection,
    load_average,
    make_institution_token,
    private_database,
    service_process,
)
from tests.samples import make_pdf

WARM_UP = 200  # certificates through the service before the clock starts (imports, caches)
POLL_S = 0.25  # the batch's completion time is its own, not when it was seen


@contextlib.contextmanager
def pipeline_service(
    workers: int, processes: int, dsn: str | None = None
) -> Iterator[tuple[Service, str, str]]:
    """A service on a private database with ``processes`` render processes, and a token of
    an institution of its own: (service, dsn, token)."""
    with private_database(dsn) as private_dsn, tempfile.TemporaryDirectory() as data_dir:
        _, token = asyncio.run(make_institution_token(private_dsn))
        env = {"CPU_PROCESSES": str(processes), "POLL_INTERVAL_S": "0.2"}
        with service_process(private_dsn, Path(data_dir), workers=workers, **env) as service:
            yield service, private_dsn, token


async def prepare(service: Service, dsn: str, token: str, count: int) -> list[str]:
    """``count`` file_ids, all from one real upload cloned (set-up, before the clock starts)."""
    return await cloned_uploads(service, dsn, token, make_pdf(), count)


async def submit(service: Service, token: str, file_ids: list[str]) -> str:
    """One bulk request with an entry per file_id."""
    entries = [
        {
            "certificate_title": "Certificate of Completion",
            "full_name": f"Student {n}",
            "applicant_email": f"s{n}@example.com",
            "file_id": file_id,
        }
        for n, file_id in enumerate(file_ids)
    ]
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(
            f"{service.base}/business/certificate-vault/bulk", json={"entries": entries}
        ) as response,
    ):
        assert response.status == 202, await response.text()
        batch_id: str = (await response.json())["data"]["batch_id"]
    return batch_id


async def wait_done(
    service: Service, token: str, batch_id: str, poll_s: float = POLL_S
) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(
                f"{service.base}/business/certificate-vault/batches/{batch_id}"
            ) as response:
                batch: dict[str, object] = (await response.json())["data"]
            if batch["status"] != "processing":
                return batch
            await asyncio.sleep(poll_s)


async def wait_idle(dsn: str) -> None:
    """Until the queue is empty (the emails of a round go before the next one starts)."""
    async with connection(dsn) as conn:
        while await conn.fetchval("SELECT count(*) FROM jobs"):
            await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=32)  # the service's default
    parser.add_argument("--loop-seconds", type=float, default=6)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    processes = os.cpu_count() or 1
    count = args.certificates
    loops: list[float] = []
    rates: list[float] = []
    with pipeline_service(args.workers, processes, args.dsn) as (service, dsn, token):
        file_ids = asyncio.run(prepare(service, dsn, token, count * args.rounds + WARM_UP))
        warm_up = asyncio.run(submit(service, token, file_ids[-WARM_UP:]))
        asyncio.run(wait_done(service, token, warm_up))
        asyncio.run(wait_idle(dsn))
        loops.append(run_loop(args.loop_seconds, processes))
        for n in range(args.rounds):
            started = time.time()
            batch_id = asyncio.run(submit(service, token, file_ids[n * count : (n + 1) * count]))
            batch = asyncio.run(wait_done(service, token, batch_id))
            assert batch["status"] == "completed", batch
            completed = datetime.fromisoformat(str(batch["completion_date"])).timestamp()
            rates.append(count / (completed - started))
            asyncio.run(wait_idle(dsn))
            loops.append(run_loop(args.loop_seconds, processes))
    report(processes, count, loops, rates)


def report(processes: int, count: int, loops: list[float], rates: list[float]) -> None:
    print(f"pipeline, {len(rates)} rounds of {count} one-page PDF certificates; {load_average()}")
    ratios = []
    for n, rate in enumerate(rates):
        loop = (loops[n] + loops[n + 1]) / 2
        ratios.append(rate / loop)
        print(
            f"  round {n + 1}: service {rate:6.1f} certificates/s,"
            f" tight loop ({processes} processes) {loop:6.1f}/s"
            f" (before {loops[n]:.1f}, after {loops[n + 1]:.1f}): {rate / loop:.2f}x"
        )
    print(f"  ratio, median of the rounds: {statistics.median(ratios):.2f}x (goal ≥ 0.8x)")


if __name__ == "__main__":
    main()
