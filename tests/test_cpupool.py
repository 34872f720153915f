"""Lanes of the CPU pool: the next call waits in its process, timed only from its own turn;
a kill or a crash touches only its own lane, and calls waiting there still run."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from service.cpupool import CpuPool


async def test_a_timeout_kills_only_its_own_process() -> None:
    pool = CpuPool(2)
    try:
        good = asyncio.create_task(pool.run_limited(10, time.sleep, 1.5))
        await asyncio.sleep(0.2)  # the good call has one process, the hanging one gets the other
        with pytest.raises(TimeoutError):
            await pool.run_limited(0.5, time.sleep, 60)
        assert await good is None  # not a BrokenProcessPool from the other kill
    finally:
        await pool.close()


async def test_a_crash_does_not_fail_the_call_waiting_behind_it() -> None:
    pool = CpuPool(1)
    try:
        crashing = asyncio.create_task(pool.run(_exit_after, 0.3))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(pool.run_limited(5, pow, 2, 8))
        with pytest.raises(BrokenProcessPool):
            await crashing
        assert await waiting == 256
    finally:
        await pool.close()


async def test_a_call_cancelled_while_waiting_still_holds_its_turn() -> None:
    """Its work was already sent to the process and runs there: the call after it is timed
    from the end of that work, not from the end of the one before."""
    pool = CpuPool(1)
    try:
        # the second's sleep will still run after the first's
        first = await cancel_one_waiting(pool, first_s=0.8, second_limit_s=5, second_s=0.8)
        third = asyncio.create_task(pool.run_limited(0.6, pow, 3, 3))
        await first
        assert await third == 27  # its 0.6 s started after the second's 0.8 s sleep
    finally:
        await pool.close()


async def test_a_cancelled_waiting_call_that_hangs_is_still_stopped_at_its_limit() -> None:
    pool = CpuPool(1)
    try:
        first = await cancel_one_waiting(pool, first_s=0.3, second_limit_s=0.5, second_s=60)
        await first
        # the hanging work runs after the first and is killed at its 0.5 s, not after 60 s
        assert await asyncio.wait_for(pool.run_limited(5, pow, 2, 2), 10) == 4
    finally:
        await pool.close()


async def test_calls_cancelled_while_lanes_are_full_are_never_sent(tmp_path: Path) -> None:
    """A cancelled waiting call keeps its place (its work runs); calls beyond the lanes'
    depth wait for a place, and cancelled there, they are never sent to a process."""
    pool = CpuPool(1)
    try:
        first = await cancel_one_waiting(pool, first_s=0.5, second_limit_s=5, second_s=0.1)
        marks = [tmp_path / f"mark-{n}" for n in range(3)]
        later = [asyncio.create_task(pool.run(Path.touch, mark)) for mark in marks]
        await asyncio.sleep(0.1)
        for task in later:
            task.cancel()
        await asyncio.gather(*later, return_exceptions=True)
        await first
        assert await pool.run_limited(5, pow, 2, 4) == 16  # after the cancelled second's work
        assert not [mark for mark in marks if mark.exists()]
    finally:
        await pool.close()


async def test_close_stops_abandoned_work_without_waiting_for_it() -> None:
    pool = CpuPool(1)
    running = asyncio.create_task(pool.run_limited(30, time.sleep, 0.3))
    await asyncio.sleep(0.1)
    abandoned = asyncio.create_task(pool.run_limited(30, time.sleep, 60))
    await asyncio.sleep(0.05)
    abandoned.cancel()  # waiting behind the first: its 60 s sleep will run after it
    await asyncio.gather(abandoned, return_exceptions=True)
    await running
    pid = _pid_of_the_sleeper(pool)
    await asyncio.wait_for(pool.close(), 15)
    for _ in range(50):  # a killed process takes a moment to go
        if not _alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not _alive(pid)


async def test_calls_after_close_are_refused_and_never_hang() -> None:
    pool = CpuPool(1)
    assert await pool.run(pow, 2, 2) == 4
    await pool.close()
    for _ in range(4):  # more than the lanes' places: none is kept by a refused call
        with pytest.raises(BrokenProcessPool):
            await asyncio.wait_for(pool.run(pow, 2, 2), 5)


async def test_a_process_that_died_idle_is_replaced() -> None:
    pool = CpuPool(1)
    try:
        pid = await pool.run(os.getpid)
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        # a call made before the pool has noticed may still fail (one attempt); then no more
        outcomes = []
        for _ in range(2):
            try:
                outcomes.append(await pool.run_limited(5, pow, 2, 3))
            except BrokenProcessPool:
                outcomes.append("broken")
        assert outcomes in (["broken", 8], [8, 8])
        assert await pool.run(os.getpid) != pid
    finally:
        await pool.close()


async def cancel_one_waiting(
    pool: CpuPool, *, first_s: float, second_limit_s: float, second_s: float
) -> asyncio.Task[None]:
    """A first call sleeps ``first_s``; a second, sent behind it, is cancelled while it waits.
    Returns the first's task."""
    first = asyncio.create_task(pool.run_limited(5, time.sleep, first_s))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(pool.run_limited(second_limit_s, time.sleep, second_s))
    await asyncio.sleep(0.05)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    return first


def _exit_after(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(3)


def _pid_of_the_sleeper(pool: CpuPool) -> int:
    """The pid of the pool's one process, now running the abandoned sleep."""
    pid = pool._lanes[0].process.pid
    assert pid is not None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child of the forkserver can stay a zombie until it is reaped
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
