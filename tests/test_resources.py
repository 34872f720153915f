"""The CPU pool survives what hostile files can do to it: hang or kill its process."""

from __future__ import annotations

import os
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from service.resources import CpuPool


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
