"""Where a batch's time goes: its start (the bulk request, the first renders), the middle, its
end, and its emails (sent after it: they wait for the renders), with the certificates
generated and the CPU of each group of processes in each, read from /proc (Linux only) every
0.25 s while one batch runs through the real service.

    .venv/bin/python -m bench.pipeline_phases [--certificates 3000] [--workers 32]

Read beside ``bench.pipeline``: a phase's rate against the tight loop's shows what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time

from bench.common import connection
from bench.cpu_split import TICKS_PER_S, Times, snapshot, split
from bench.pipeline import WARM_UP, pipeline_service, prepare, submit, wait_done, wait_idle

SAMPLE_S = 0.25
GROUPS = {
    "rendering processes": "render",
    "service process": "service",
    "PostgreSQL": "pg",
    "everything else (kernel threads, this script)": "other",
}


class Sampler(threading.Thread):
    """/proc snapshots every SAMPLE_S, with their time.time(), until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, dict[int, Times]]] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            self.samples.append((time.time(), snapshot()))
            time.sleep(SAMPLE_S)

    def stop(self) -> None:
        self._stopping.set()
        self.join()
        self.samples.append((time.time(), snapshot()))


async def generated_times(dsn: str, batch_id: str) -> list[float]:
    async with connection(dsn) as conn:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM c.generated_at)::float8 AS t FROM certificates c"
            " JOIN batches b ON b.id = c.batch_id WHERE b.uuid = $1 ORDER BY 1",
            batch_id,
        )
    return [row["t"] for row in rows]


def nearest(samples: list[tuple[float, dict[int, Times]]], at: float) -> int:
    return min(range(len(samples)), key=lambda n: abs(samples[n][0] - at))


def phase(
    name: str,
    samples: list[tuple[float, dict[int, Times]]],
    span: tuple[float, float],
    times: list[float],
    service: int,
) -> None:
    first, last = nearest(samples, span[0]), nearest(samples, span[1])
    (start, before), (end, after) = samples[first], samples[max(last, first + 1)]
    count = sum(1 for t in times if start < t <= end)
    cores = {
        GROUPS[group]: (user + system) / TICKS_PER_S / (end - start)
        for group, (user, system) in split(before, after, service).items()
    }
    shares = "  ".join(f"{key} {cores.get(key, 0.0):4.2f}" for key in GROUPS.values())
    print(
        f"  {name:<30} {end - start:5.2f} s  {count:5} certificates"
        f" {count / (end - start):6.1f}/s   cores: {shares}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=32)  # the service's default
    args = parser.parse_args()
    count = args.certificates
    with pipeline_service(args.workers, os.cpu_count() or 1) as (service, dsn, token):
        file_ids = asyncio.run(prepare(service, dsn, token, count + WARM_UP))
        asyncio.run(
            wait_done(service, token, asyncio.run(submit(service, token, file_ids[:WARM_UP])))
        )
        asyncio.run(wait_idle(dsn))
        sampler = Sampler()
        sampler.start()
        time.sleep(2 * SAMPLE_S)
        started = time.time()
        batch_id = asyncio.run(submit(service, token, file_ids[WARM_UP:]))
        accepted = time.time()
        asyncio.run(wait_done(service, token, batch_id))
        times = asyncio.run(generated_times(dsn, batch_id))
        asyncio.run(wait_idle(dsn))
        sampler.stop()
    tenth, four_fifths = times[len(times) // 10], times[len(times) * 4 // 5]
    print(
        f"pipeline phases, {count} one-page PDF certificates: {count / (times[-1] - started):.1f}"
        f" certificates/s from the request; 202 after {accepted - started:.2f} s, first"
        f" generated after {times[0] - started:.2f} s, batch completed after"
        f" {times[-1] - started:.2f} s"
    )
    samples = sampler.samples
    phase("request to the first tenth", samples, (started, tenth), times, service.pid)
    phase("the middle (to four fifths)", samples, (tenth, four_fifths), times, service.pid)
    phase("the last fifth", samples, (four_fifths, times[-1]), times, service.pid)
    phase("then the emails", samples, (times[-1], samples[-1][0]), times, service.pid)


if __name__ == "__main__":
    main()
