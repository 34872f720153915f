"""What handing a render to the CPU pool costs the service process: its own CPU per call
(pickling, sockets, the event loop's wake-ups), beside the render processes' CPU per call.

    .venv/bin/python -m bench.cpupool_overhead [--calls 1000] [--processes 2]

The calls are the tight loop's (``bench.artifacts_loop``): a one-page PDF original each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.artifacts_loop import BASE_URL, INSTITUTION
from bench.cpu_split import TICKS_PER_S, descendants, snapshot
from service.artifacts import new_reference_id, render_artifacts
from service.cpupool import CpuPool
from tests import samples


async def run(calls: int, processes: int) -> None:
    original = samples.make_pdf()
    pool = CpuPool(processes)

    async def one() -> None:
        reference_id = new_reference_id()
        async with pool.slots:
            await pool.run(
                render_artifacts,
                original,
                "application/pdf",
                reference_id=reference_id,
                verify_url=f"{BASE_URL}/verify/{reference_id}",
                institution_name=INSTITUTION,
            )

    try:
        await asyncio.gather(*(one() for _ in range(processes * 4)))  # warm-up
        before, cpu_before, started = snapshot(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        wall, own = time.perf_counter() - started, time.process_time() - cpu_before
        after = snapshot()
    finally:
        await pool.close()
    workers = descendants(after, os.getpid())
    ticks = sum(
        after[pid].user + after[pid].system - before[pid].user - before[pid].system
        for pid in workers
        if pid in before
    )
    print(f"cpu pool, {calls} renders on {processes} processes: {calls / wall:.1f}/s")
    print(f"  this process (the service's side)   {1000 * own / calls:5.2f} ms CPU per call")
    print(f"  render processes                    {1000 * ticks / TICKS_PER_S / calls:5.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.processes))


if __name__ == "__main__":
    main()
