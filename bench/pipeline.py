"""Certificates per second from 1-page PDF originals through the real service (workers on),
beside the same artifact function in a tight loop on as many processes as cores, same run.
Timed from the bulk request to the batch's completion (the uploads are made before). The loop
runs before and after the service, and the ratio is taken against their mean: a shared machine
drifts, by tens of percent within a minute some days.

    .venv/bin/python -m bench.pipeline [--certificates 2000] [--workers 32] [--dsn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.artifacts_loop import run_loop
from bench.common import (
    Service,
    cloned_uploads,
    load_average,
    make_institution_token,
    private_database,
    service_process,
)
from tests.samples import make_pdf


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


async def wait_done(service: Service, token: str, batch_id: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            async with session.get(
                f"{service.base}/business/certificate-vault/batches/{batch_id}"
            ) as response:
                batch: dict[str, object] = (await response.json())["data"]
            if batch["status"] != "processing":
                return batch
            await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=32)  # the service's default
    parser.add_argument("--loop-seconds", type=float, default=8)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    processes = os.cpu_count() or 1
    loop_before = run_loop(args.loop_seconds, processes)
    with private_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as data_dir:
        _, token = asyncio.run(make_institution_token(dsn))
        env = {"CPU_PROCESSES": str(processes), "POLL_INTERVAL_S": "0.2"}
        with service_process(dsn, Path(data_dir), workers=args.workers, **env) as service:
            file_ids = asyncio.run(prepare(service, dsn, token, args.certificates))
            started = time.perf_counter()
            batch_id = asyncio.run(submit(service, token, file_ids))
            batch = asyncio.run(wait_done(service, token, batch_id))
            elapsed = time.perf_counter() - started
    loop_after = run_loop(args.loop_seconds, processes)
    loop_rate = (loop_before + loop_after) / 2
    service_rate = args.certificates / elapsed
    print(f"pipeline, {args.certificates} one-page PDF certificates; {load_average()}")
    print(
        f"  tight loop, {processes} processes : {loop_rate:6.1f} certificates/s"
        f" (before {loop_before:.1f}, after {loop_after:.1f})"
    )
    print(
        f"  through the service        : {service_rate:6.1f} certificates/s"
        f" (batch {batch['status']})"
    )
    print(f"  ratio: {service_rate / loop_rate:.2f}x (goal ≥ 0.8x)")


if __name__ == "__main__":
    main()
