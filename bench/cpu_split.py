"""Where the CPU goes per certificate: the service process, its rendering processes and
PostgreSQL, from /proc while a bulk batch runs through the real service (Linux only).

    .venv/bin/python -m bench.cpu_split [--certificates 1500] [--workers 32]

Read beside ``bench.artifacts_loop``: on two cores, the pipeline reaches 0.8x of the tight loop
only if everything outside the loop's own work costs at most a quarter of it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.pipeline import pipeline_service, prepare, submit, wait_done

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Times:
    parent: int
    user: int  # clock ticks
    system: int
    command: str


def snapshot() -> dict[int, Times]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                continue  # ended while we looked
            fields = stat[stat.rindex(")") + 2 :].split()
            found[int(entry.name)] = Times(
                int(fields[1]), int(fields[11]), int(fields[12]), command
            )
    return found


def descendants(processes: dict[int, Times], root: int) -> set[int]:
    family, grew = {root}, True
    while grew:
        children = {pid for pid, t in processes.items() if t.parent in family} - family
        family |= children
        grew = bool(children)
    return family - {root}


def split(before: dict[int, Times], after: dict[int, Times], service: int) -> dict[str, list[int]]:
    """CPU ticks (user, system) spent between two snapshots, by group."""
    children = descendants(after, service)
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid, now in after.items():
        then = before.get(pid, Times(0, 0, 0, ""))
        if pid == service:
            group = "service process"
        elif pid in children:
            group = "rendering processes"
        elif "postgres" in now.command:
            group = "PostgreSQL"
        else:
            group = "everything else (kernel threads, this script)"
        groups[group][0] += now.user - then.user
        groups[group][1] += now.system - then.system
    return groups


def report(title: str, groups: dict[str, list[int]], count: int) -> None:
    print(f"  {title}:")
    for group, (user, system) in groups.items():
        total_ms, system_ms = (1000 * (user + system), 1000 * system)
        print(
            f"    {group:48} {total_ms / TICKS_PER_S / count:5.2f} ms"
            f" (kernel {system_ms / TICKS_PER_S / count:4.2f})"
        )


async def outbox_pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        pending: int = await conn.fetchval(
            "SELECT count(*) FROM email_outbox WHERE status = 'pending'"
        )
        return pending
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=32)  # the service's default
    args = parser.parse_args()
    count = args.certificates
    with pipeline_service(args.workers, os.cpu_count() or 1) as (service, dsn, token):
        file_ids = asyncio.run(prepare(service, dsn, token, count))
        start, started = snapshot(), time.perf_counter()
        batch_id = asyncio.run(submit(service, token, file_ids))
        asyncio.run(wait_done(service, token, batch_id, poll_s=0.1))  # CPU read soon after
        done, elapsed = snapshot(), time.perf_counter() - started
        while asyncio.run(outbox_pending(dsn)):
            time.sleep(0.1)
        mailed = snapshot()
    print(f"cpu split, {count} one-page PDF certificates: {count / elapsed:.1f} certificates/s")
    report(
        "CPU per certificate, bulk request to batch completed",
        split(start, done, service.pid),
        count,
    )
    report(
        "then per certificate, until every email is written",
        split(done, mailed, service.pid),
        count,
    )


if __name__ == "__main__":
    main()
