"""POST of 10,000 entries → 202, through a real service process, beside a raw COPY of the same
rows (one batch, 10,000 certificates, their 625 jobs of 16) into the same tables in the same
run.

    .venv/bin/python -m bench.bulk_accept [--runs 9] [--entries 10000] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    connection,
    load_average,
    make_institution_token,
    percentile,
    private_database,
    service_process,
    summary,
)
from service.data import certificates as certificate_data
from service.jobs import PROCESS_CERTIFICATES

PER_JOB = 16  # CERTIFICATES_PER_JOB's default


async def fake_uploads(conn: asyncpg.Connection, institution_id: int, count: int) -> list[str]:
    rows = await conn.fetch(
        "INSERT INTO uploads (institution_id, storage_key, file_name, mime_type, size, sha256,"
        " expires_at) SELECT $1, 'uploads/bench/' || g || '.pdf', 'c.pdf', 'application/pdf',"
        " 1000, repeat('0', 64), now() + interval '1 day' FROM generate_series(1, $2) g"
        " RETURNING uuid",
        institution_id,
        count,
    )
    return [str(r["uuid"]) for r in rows]


def body(file_ids: list[str], run: int) -> dict[str, Any]:
    return {
        "entries": [
            {
                "certificate_title": f"Certificate of Achievement {run}",
                "full_name": f"Student {n}",
                "applicant_email": f"student{n}.{run}@example.com",
                "file_id": file_id,
                "issue_date": "2025-06-01",
                "details": "Awarded for outstanding performance",
            }
            for n, file_id in enumerate(file_ids)
        ]
    }


async def post_runs(base: str, dsn: str, runs: int, entries: int) -> list[float]:
    institution_id, token = await make_institution_token(dsn)
    timings = []
    async with aiohttp.ClientSession() as session, connection(dsn) as conn:
        for run in range(runs):
            payload = body(await fake_uploads(conn, institution_id, entries), run)
            started = time.perf_counter()
            async with session.post(
                f"{base}/business/certificate-vault/bulk",
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 202, await response.text()
                await response.read()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


async def copy_runs(dsn: str, runs: int, entries: int) -> list[float]:
    """The floor: the same rows written with binary COPY in one transaction, nothing else."""
    institution_id, _ = await make_institution_token(dsn)
    timings = []
    async with connection(dsn) as conn:
        for run in range(runs):
            started = time.perf_counter()
            async with conn.transaction():
                batch_id = await conn.fetchval(
                    "INSERT INTO batches (institution_id, total_certificates) VALUES ($1, $2)"
                    " RETURNING id",
                    institution_id,
                    entries,
                )
                records = [
                    (institution_id, batch_id, n, "bulk_upload", f"Title {run}", f"S {n}",
                     f"s{n}@example.com", None, None, uuid.uuid4(), f"k/{n}", "c.pdf",
                     "application/pdf", 1000, "0" * 64)
                    for n in range(entries)
                ]  # fmt: skip
                await conn.copy_records_to_table(
                    "certificates", records=records, columns=certificate_data.COPY_COLUMNS
                )
                # as the service queues them: 16 small PDFs to a job (the ids do not change
                # what a COPY costs)
                chunks = [
                    list(range(n, min(n + PER_JOB, entries))) for n in range(0, entries, PER_JOB)
                ]
                await conn.copy_records_to_table(
                    "jobs",
                    records=[
                        (PROCESS_CERTIFICATES, batch_id, json.dumps({"ids": ids})) for ids in chunks
                    ],
                    columns=["kind", "ref_id", "payload"],
                )
            timings.append((time.perf_counter() - started) * 1000)
            await conn.execute("DELETE FROM jobs")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--dsn", default=None, help="default: a private embedded PostgreSQL")
    args = parser.parse_args()
    with private_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as data_dir:
        with service_process(dsn, Path(data_dir), workers=0) as service:
            asyncio.run(post_runs(service.base, dsn, 1, args.entries))  # warm-up
            posted = asyncio.run(post_runs(service.base, dsn, args.runs, args.entries))
        copied = asyncio.run(copy_runs(dsn, args.runs, args.entries))
    print(f"bulk accept, {args.entries} entries, {args.runs} runs; {load_average()}")
    print(f"  POST → 202 : {summary(posted)}")
    print(f"  raw COPY   : {summary(copied)}")
    floor = percentile(copied, 0.5)
    print(
        f"  ratio to COPY p50: p50 {percentile(posted, 0.5) / floor:.2f}x"
        f"  p95 {percentile(posted, 0.95) / floor:.2f}x  (goal: p50 ≤ 1.5x, p95 ≤ 2x)"
    )


if __name__ == "__main__":
    main()
