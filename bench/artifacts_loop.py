"""Tight loop: certificates per second through ``render_artifacts``, one process per core.

Each certificate is a 1-page A4 PDF original with a fresh reference id. CPU only, no network.
Run from the repository root: ``python -m bench.artifacts_loop --seconds 10 --processes 2``.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

from service.artifacts import new_reference_id, render_artifacts
from tests import samples

BASE_URL = "https://vault.example.test"
INSTITUTION = "Example Institute of Technology"


def _worker(seconds: float) -> tuple[int, float, float]:
    """Render for ``seconds`` after one warm-up: (count, wall seconds, CPU seconds)."""
    original = samples.make_pdf()
    _render_one(original)
    count = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        _render_one(original)
        count += 1
    return count, time.perf_counter() - start, time.process_time() - cpu_start


def _render_one(original: bytes) -> None:
    reference_id = new_reference_id()
    render_artifacts(
        original,
        "application/pdf",
        reference_id=reference_id,
        verify_url=f"{BASE_URL}/verify/{reference_id}",
        institution_name=INSTITUTION,
    )


def run_loop(seconds: float, processes: int) -> float:
    """Certificates per second over ``processes`` processes, each looping for ``seconds``."""
    return sum(count / wall for count, wall, _ in _run(seconds, processes))


def _run(seconds: float, processes: int) -> list[tuple[int, float, float]]:
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return list(pool.map(_worker, [seconds] * processes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    results = _run(args.seconds, args.processes)
    rate = sum(count / wall for count, wall, _ in results)
    cpu_ms = 1000 * sum(cpu for _, _, cpu in results) / sum(count for count, _, _ in results)
    # CPU time per certificate does not depend on what else the machine is running.
    print(
        f"artifacts: {rate:.1f} certificates/s on {args.processes} processes (1-page PDF); "
        f"{cpu_ms:.1f} ms CPU per certificate"
    )


if __name__ == "__main__":
    main()
