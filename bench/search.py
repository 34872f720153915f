"""List and search at 1,000,000 certificates, through a real service process.

    .venv/bin/python -m bench.search [--certificates 1000000] [--requests 200] [--dsn ...]

Rows are generated in SQL (one institution holds 90 %, nine others share the rest), then the
list, each filter and substring search are timed over HTTP; p50/p95 per query kind.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from hashlib import md5
from pathlib import Path

import aiohttp

from bench.common import (
    connection,
    load_average,
    make_institution_token,
    percentile,
    private_database,
    service_process,
    summary,
)

FILL = """
INSERT INTO certificates (institution_id, entry_index, trigger_context, status, reference_id,
    certificate_title, full_name, applicant_email, issue_date, file_id, original_key,
    original_name, original_mime, original_size, original_sha256)
SELECT CASE WHEN g % 10 = 0 THEN $2::bigint ELSE $1::bigint END, g, 'bulk_upload',
    (ARRAY['generated','generated','generated','failed','pending'])[1 + g % 5],
    'VEC-IC-2025' || upper(lpad(to_hex(g * 7919), 13, '0')),
    (ARRAY['Certificate of Achievement','Bachelor of Science','Master of Arts',
           'Diploma in Nursing','Certificate of Completion'])[1 + g % 5] || ' ' || (g % 97),
    'Student ' || md5(g::text), 'student' || g || '@example.com', date '2025-06-01',
    gen_random_uuid(), 'k/' || g, 'c.pdf', 'application/pdf', 1000, repeat('0', 64)
FROM generate_series($3::bigint, $4::bigint) g
"""


async def fill(dsn: str, count: int) -> tuple[int, str]:
    institution_id, token = await make_institution_token(dsn)
    other, _ = await make_institution_token(dsn, "Other College")
    async with connection(dsn) as conn:
        existing = await conn.fetchval("SELECT count(*) FROM certificates")
        step = 100_000
        for start in range(existing + 1, count + 1, step):
            await conn.execute(FILL, institution_id, other, start, min(count, start + step - 1))
        await conn.execute("VACUUM ANALYZE certificates")
    return institution_id, token


def queries(rng: random.Random, count: int) -> dict[str, list[str]]:
    base = "/business/certificate-vault"
    numbers = [rng.randrange(1, count) for _ in range(50)]
    return {
        "list page 1": [f"{base}?per_page=15"],
        "list deep page": [
            f"{base}?page={rng.randrange(100, 5000)}&per_page=15" for _ in range(20)
        ],
        "status filter": [f"{base}?status={s}" for s in ("generated", "failed", "pending")],
        "email filter": [f"{base}?applicant_email=student{n}@example.com" for n in numbers],
        "search reference": [
            f"{base}?search=VEC-IC-2025{format(n * 7919, 'X').zfill(13)[:8]}" for n in numbers
        ],
        "search person": [
            f"{base}?search=student {md5(str(n).encode()).hexdigest()[:10]}" for n in numbers
        ],
        "search broad": [
            f"{base}?search={rng.choice(['nursing', 'bachelor', 'arts 4'])}" for _ in numbers
        ],
        "search email": [f"{base}?search=student{n}@" for n in numbers],
    }


async def run(base: str, token: str, count: int, requests: int) -> dict[str, list[float]]:
    rng = random.Random(5)
    timings: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for kind, urls in queries(rng, count).items():
            timings[kind] = []
            for n in range(requests // 7 + 5):
                started = time.perf_counter()
                async with session.get(base + urls[n % len(urls)]) as response:
                    assert response.status == 200, await response.text()
                    await response.read()
                if n >= 3:  # the first few warm the caches
                    timings[kind].append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=350)
    parser.add_argument("--dsn", default=None)
    args = parser.parse_args()
    with private_database(args.dsn) as dsn, tempfile.TemporaryDirectory() as data_dir:
        started = time.perf_counter()
        _, token = asyncio.run(fill(dsn, args.certificates))
        print(f"filled {args.certificates} certificates in {time.perf_counter() - started:.0f} s")
        with service_process(dsn, Path(data_dir), workers=0) as service:
            timings = asyncio.run(run(service.base, token, args.certificates, args.requests))
    print(f"list and search at {args.certificates} certificates; {load_average()}")
    for kind, values in timings.items():
        print(f"  {kind:17s}: {summary(values)}")
    worst = max(percentile(v, 0.95) for v in timings.values())
    print(f"  worst p95 {worst:.1f} ms (goal ≤ 50 ms)")


if __name__ == "__main__":
    main()
