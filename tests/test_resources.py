"""The CPU pool survives what hostile files can do to it: hang or kill its process."""

from __future__ import annotations

import os
import time
from concurrent.futures.process import BrokenProcessPool

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
