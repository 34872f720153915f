"""Uploads of 1 MB and 20 MB files against a running service: MB/s and the server's RSS growth.

.venv/bin/python -m bench.upload [--small 40] [--large 8] [--concurrency 4] [--dsn ...]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import (
    Service,
    load_average,
    make_institution_token,
    private_database,
    service_process,
    summary,
)
from tests.samples import make_pdf

MB = 1024 * 1024


def padded_pdf(size: int) -> bytes:
    """A valid PDF padded with a comment to exactly ``size`` bytes."""
    pdf = make_pdf()
    return pdf + b"%" + b"x" * (size - len(pdf) - 2) + b"\n"


async def upload_all(
    service: Service, token: str, data: bytes, count: int, concurrency: int
) -> tuple[float, list[float], int]:
    """(seconds, per-upload ms, peak RSS growth in KB) for ``count`` uploads of ``data``."""
    baseline = service.rss_kb()
    peak = baseline
    timings: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession) -> None:
        async with semaphore:
            form = aiohttp.FormData()
            form.add_field("file", io.BytesIO(data), filename="cert.pdf")
            started = time.perf_counter()
            async with session.post(
                f"{service.base}/business/certificate-vault/upload-file", data=form
            ) as response:
                assert response.status == 201, await response.text()
            timings.append((time.perf_counter() - started) * 1000)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, service.rss_kb())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        await asyncio.gather(*(one(session) for _ in range(count)))
    elapsed = time.perf_counter() - started
    sampler.cancel()
    return elapsed, timings, peak - baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=40, help="1 MB uploads")
    parser.add_argument("--large", type=int, default=8, help="20 MB uploads")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    with private_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as data_dir:
        _, token = asyncio.run(make_institution_token(dsn))
        with service_process(
            dsn, Path(data_dir), workers=0, UPLOAD_QUOTA_BYTES=str(50 * 1024 * MB)
        ) as service:
            asyncio.run(upload_all(service, token, padded_pdf(MB), 4, 2))  # warm-up
            print(f"uploads, {args.concurrency} at a time; {load_average()}")
            for label, size, count in (("1 MB", MB, args.small), ("20 MB", 20 * MB, args.large)):
                elapsed, timings, growth = asyncio.run(
                    upload_all(service, token, padded_pdf(size), count, args.concurrency)
                )
                rate = size * count / MB / elapsed
                print(
                    f"  {label:6s} x {count:3d}: {rate:6.1f} MB/s  {summary(timings)}"
                    f"  peak RSS growth {growth / 1024:.1f} MB"
                )


if __name__ == "__main__":
    main()
