"""CPU work in processes: one lane per process, each holding the call that runs and the next.

The next call is already sent to its process while the one before runs, so the process starts
it the moment it is free (no round trip through the event loop in between). Its time limit
starts with its turn, not when it was sent: a call never times out for the work of another.
A call past its limit, or cancelled while it runs, has its lane's process killed and replaced;
calls waiting in that lane are sent again to the new process, in order (they never started).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ParamSpec, TypeVar

from service.worker_process import WorkerProcess

P = ParamSpec("P")
T = TypeVar("T")

# Calls per process at once: the running one and the next. Letting more wait would hold more
# inputs in memory for no gain: the next one is enough to keep a process busy.
DEPTH = 2


@dataclass(eq=False)
class _Call:
    work: Callable[[], Any]
    future: asyncio.Future[Any]
    previous: asyncio.Future[None] | None  # done when the call before it in the lane is over
    done: asyncio.Future[None] = field(default_factory=lambda: _loop().create_future())
    started: bool = False


class _Lane:
    """One process and the calls sent to it, in the order it takes them. The process starts
    with the first call (an API-only replica never starts its render processes)."""

    def __init__(self) -> None:
        self._process: WorkerProcess | None = None
        self._stopped: WorkerProcess | None = None
        self.calls: list[_Call] = []
        self.closed = False

    @property
    def process(self) -> WorkerProcess:
        if self._process is None:
            self._process = WorkerProcess()
        return self._process

    def send(self, work: Callable[[], Any]) -> _Call:
        previous = self.calls[-1].done if self.calls else None
        call = _Call(work, self.process.submit(work), previous)
        self.calls.append(call)
        return call

    def replace(self, *, kill: bool) -> None:
        """A new process; the calls that had not started are sent to it, in their order.
        Once the pool is closed, only the old one is stopped."""
        self._stop(kill=kill)
        for call in self.calls:
            _forget(call.future)
        if self.closed:
            return
        for call in self.calls:
            if not call.started:
                call.future = self.process.submit(call.work)

    def close(self) -> None:
        self.closed = True
        # what still runs here is an abandoned call's: no one waits for it
        self._stop(kill=True)
        for call in self.calls:
            _forget(call.future)

    async def wait(self) -> None:
        """Until the last process is gone (after ``close``)."""
        if self._stopped is not None:
            await self._stopped.wait()

    def _stop(self, *, kill: bool) -> None:
        old, self._process = self._process, None
        if old is None:
            return
        if kill:
            old.kill()
        old.close()
        self._stopped = old


class CpuPool:
    """Processes for CPU work that survive what hostile files do to them: hang, crash."""

    def __init__(self, processes: int) -> None:
        self._lanes = [_Lane() for _ in range(processes)]
        self._free = asyncio.Semaphore(processes * DEPTH)
        # Work that waits for a process holds its input in memory: only a few may wait. One
        # more per process than the lanes hold, so the next input is read while lanes are full.
        self.slots = asyncio.Semaphore(processes * (DEPTH + 1))
        self._orphans: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(None, partial(fn, *args, **kwargs))

    async def run_limited(
        self, timeout_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``run``, but a call running past ``timeout_s`` is killed and raises TimeoutError;
        a call cancelled while it runs is killed too (its work would go on otherwise)."""
        return await self._run(timeout_s, partial(fn, *args, **kwargs))

    async def _run(self, timeout_s: float | None, work: Callable[[], T]) -> T:
        await self._free.acquire()
        orphaned = False  # then its place is given back when its turn ends (``_orphan_done``)
        try:
            if self._closed:
                raise BrokenProcessPool("The process pool is closed.")
            lane = min(self._lanes, key=lambda lane: len(lane.calls))
            call = lane.send(work)
            turn = asyncio.ensure_future(_take_turn(lane, call, timeout_s))
            try:
                result: T = await asyncio.shield(turn)
                return result
            except asyncio.CancelledError:
                if call.started or turn.done():
                    turn.cancel()  # running: its process is killed
                    _forget(turn)
                else:
                    # Already on its way to the process, where it will run: its turn plays out
                    # (and is timed) in the background, so the next call's clock starts after
                    # it. It keeps its place in the lane (and its input in memory) until then.
                    orphaned = True
                    self._orphans.add(turn)
                    turn.add_done_callback(self._orphan_done)
                raise
        finally:
            if not orphaned:
                self._free.release()

    def _orphan_done(self, turn: asyncio.Task[Any]) -> None:
        self._orphans.discard(turn)
        self._free.release()
        _forget(turn)  # nobody awaits it: its timeout or crash is already dealt with

    async def close(self) -> None:
        """Stop the processes: nothing waits here for work whose caller has gone."""
        self._closed = True
        for lane in self._lanes:
            lane.close()
        orphans = list(self._orphans)
        for orphan in orphans:
            orphan.cancel()
        await asyncio.gather(*orphans, return_exceptions=True)
        for lane in self._lanes:
            await lane.wait()


async def _take_turn(lane: _Lane, call: _Call, timeout_s: float | None) -> Any:
    try:
        if call.previous is not None:
            await asyncio.wait({call.previous})
        if _process_stopped(call.future) and not lane.closed:
            # Its process stopped before this call's turn: idle, or (rarely) on this very work,
            # begun early. Sent again once; a second stop is this call's own failure.
            lane.replace(kill=False)
        call.started = True
        done, _ = await asyncio.wait({call.future}, timeout=timeout_s)
        if not done:
            lane.replace(kill=True)
            raise TimeoutError
        if call.future.cancelled():  # the pool was closed before it was sent
            raise BrokenProcessPool("The process pool is closed.")
        try:
            return call.future.result()
        except BrokenProcessPool:
            lane.replace(kill=False)  # this call's work ended its process
            raise
    except asyncio.CancelledError:
        if call.started:
            lane.replace(kill=True)
        _forget(call.future)
        raise
    finally:
        lane.calls.remove(call)
        call.done.set_result(None)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _process_stopped(future: asyncio.Future[Any]) -> bool:
    """Failed before its turn: never sent (cancelled), or its process is gone."""
    if not future.done():
        return False
    return future.cancelled() or isinstance(future.exception(), BrokenProcessPool)


def _forget(future: asyncio.Future[Any]) -> None:
    """A future nobody will await (a replaced process's, an orphaned turn's): its failure is
    expected and not worth asyncio's "exception was never retrieved" log line."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
