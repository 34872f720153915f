"""The CPU pool's processes, spoken to over a socket: results in order, failures that travel,
and a crash that costs only the calls it ends."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from functools import partial

import pytest

from service.artifacts import ArtifactError
from service.worker_process import WorkerProcess


async def test_results_come_back_to_their_calls_in_order() -> None:
    process = WorkerProcess()
    try:
        futures = [process.submit(partial(pow, 2, n)) for n in range(20)]
        assert await asyncio.gather(*futures) == [2**n for n in range(20)]
    finally:
        process.close()


async def test_a_big_result_and_a_big_call_cross_the_socket_whole() -> None:
    process = WorkerProcess()
    try:
        data = os.urandom(8 << 20)
        assert await process.submit(partial(bytes, data)) == data
    finally:
        process.close()


async def test_a_result_sent_before_a_crash_still_reaches_its_call() -> None:
    """The next call ends the process at once: the result already sent is read first."""
    process = WorkerProcess()
    try:
        done = process.submit(partial(pow, 2, 8))
        crash = process.submit(partial(os._exit, 3))
        assert await done == 256
        with pytest.raises(BrokenProcessPool):
            await crash
        with pytest.raises(BrokenProcessPool):  # and nothing more is sent to it
            await process.submit(partial(pow, 2, 2))
    finally:
        process.close()


async def test_an_exception_travels_with_where_it_happened() -> None:
    process = WorkerProcess()
    try:
        with pytest.raises(ArtifactError, match="not a PDF") as raised:
            await process.submit(partial(_fail, "not a PDF"))
        notes = "".join(getattr(raised.value, "__notes__", []))
        assert "in the worker process" in notes and "_fail" in notes
        assert await process.submit(partial(pow, 3, 2)) == 9  # the process goes on
    finally:
        process.close()


async def test_a_stop_iteration_fails_its_call_and_no_other() -> None:
    """A future cannot carry StopIteration: it arrives as a RuntimeError, and the next call
    still gets its answer."""
    process = WorkerProcess()
    try:
        failing = process.submit(partial(next, iter(())))
        after = process.submit(partial(pow, 2, 5))
        with pytest.raises(RuntimeError, match="StopIteration"):
            await failing
        assert await after == 32
    finally:
        process.close()


async def test_an_interrupt_from_the_terminal_does_not_stop_a_call() -> None:
    """Ctrl-C reaches every process of the group; the service decides when its processes
    end, so theirs ignore it."""
    process = WorkerProcess()
    try:
        pid = await process.submit(partial(os.getpid))
        running = process.submit(partial(time.sleep, 0.5))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGINT)
        assert await running is None
    finally:
        process.close()


def _fail(message: str) -> None:
    raise ArtifactError(message)
