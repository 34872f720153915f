"""The CPU pool survives what hostile files can do to it: hang or kill its process."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from service.cpupool import CpuPool


async def test_a_call_past_its_time_limit_is_killed_and_the_pool_goes_on() -> None:
    pool = CpuPool(1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pool.run_limited(0.5, time.sleep, 60)
        assert await pool.run(pow, 2, 10) == 1024
        assert time.monotonic() - started < 30
    finally:
        await pool.close()


async def test_a_call_waiting_for_a_process_is_neither_timed_nor_killed_by_another() -> None:
    """One process: a slow call (1.5 s) runs, a second waits for it. Waiting does not count
    against the second's 1 s limit; a third call's timeout kills only its own work."""
    pool = CpuPool(1)
    try:
        slow = asyncio.create_task(pool.run_limited(5, time.sleep, 1.5))
        await asyncio.sleep(0.2)  # the slow call holds the process
        assert await pool.run_limited(1, pow, 2, 5) == 32
        await slow
        hanging = asyncio.create_task(pool.run_limited(0.5, time.sleep, 60))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(pool.run_limited(5, pow, 3, 2))
        with pytest.raises(TimeoutError):
            await hanging
        assert await queued == 9  # not a BrokenProcessPool from the killed pool
    finally:
        await pool.close()


async def test_a_cancelled_call_does_not_leave_its_work_running() -> None:
    pool = CpuPool(1)
    try:
        running = asyncio.create_task(pool.run_limited(30, time.sleep, 3))
        await asyncio.sleep(0.3)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        # its process was killed: the next call does not wait behind a 3 s sleep
        assert await pool.run_limited(1.0, pow, 2, 5) == 32
    finally:
        await pool.close()


async def test_a_crashed_process_is_replaced() -> None:
    pool = CpuPool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            await pool.run(os._exit, 3)
        assert await pool.run(pow, 3, 3) == 27
    finally:
        await pool.close()


def test_stale_spool_files_are_cleared_and_fresh_ones_kept(tmp_path: Path) -> None:
    from service.resources import clear_stale_spool

    stale, fresh, other = tmp_path / "upload-a.part", tmp_path / "upload-b.part", tmp_path / "x"
    for path in (stale, fresh, other):
        path.write_bytes(b"data")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    clear_stale_spool(tmp_path)
    assert not stale.exists() and fresh.exists() and other.exists()
