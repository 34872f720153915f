"""Coalescing: many concurrent calls of a lookup answered by one set-based statement.

Jobs run concurrently, and each used to send its own one-row query (start a certificate, find
its recipient, load an email). A ``Coalesced`` lookup sends the calls that arrive while one
statement is running, all together, as the next one: with a single caller it adds no wait
(the statement goes out on the next turn of the event loop), and under load one round trip
serves as many callers as arrived during the last one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")

# the keys of many calls -> a value per key, in order
Lookup = Callable[[list[Key]], Awaitable[Sequence[Value]]]


class Coalesced(Generic[Key, Value]):
    """``await coalesced(key)`` as if it ran ``lookup([key])[0]``, sharing the statement.

    A lookup that raises fails every call it served, with that exception. A caller cancelled
    while waiting leaves the others to their answer; its key is dropped if not yet sent, and
    the statement under way is cancelled if it was the last one waiting for it.
    """

    def __init__(self, lookup: Lookup[Key, Value], *, at_most: int = 200) -> None:
        self._lookup = lookup
        self._at_most = at_most
        self._waiting: list[tuple[Key, asyncio.Future[Value]]] = []
        self._serving: list[asyncio.Future[Value]] = []
        self._runner: asyncio.Task[None] | None = None
        self._abandoned = False

    async def __call__(self, key: Key) -> Value:
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="coalesced-lookup")
        try:
            return await future
        except asyncio.CancelledError:
            runner = self._stop_if_unwanted()
            if runner is not None:
                # its connection is back in the pool when this caller's cancellation ends
                await asyncio.wait([runner])
            raise

    def _stop_if_unwanted(self) -> asyncio.Task[None] | None:
        """The statement under way serves nobody any more (its callers were cancelled: a
        shutdown, a job's time limit): cancel it too, as a caller's own statement would be,
        rather than leave it holding a connection, perhaps waiting on a lock. Callers waiting
        for the next statement get a runner of their own. Returns the cancelled runner."""
        runner = self._runner
        if runner is None or not all(f.done() for f in self._serving):
            return None
        if not self._serving and not all(f.done() for _, f in self._waiting):
            return None  # between statements, with callers to answer
        self._abandoned = True
        runner.cancel()
        return runner

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._at_most]
                del self._waiting[: self._at_most]
                await self._answer([(key, f) for key, f in batch if not f.done()])
        except asyncio.CancelledError:
            if not self._abandoned:  # cancelled from outside (the loop is closing)
                for _, future in self._waiting:
                    future.cancel()
            raise
        finally:
            self._serving = []
            self._abandoned = False
            self._waiting = [(key, f) for key, f in self._waiting if not f.done()]
            self._runner = None
            if self._waiting:  # callers that arrived after it was abandoned
                self._runner = asyncio.create_task(self._run(), name="coalesced-lookup")

    async def _answer(self, calls: list[tuple[Key, asyncio.Future[Value]]]) -> None:
        if not calls:
            return
        self._serving = [future for _, future in calls]
        try:
            values = await self._lookup([key for key, _ in calls])
            if len(values) != len(calls):
                raise RuntimeError(f"lookup gave {len(values)} values for {len(calls)} keys")
        except asyncio.CancelledError:
            for _, future in calls:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), value in zip(calls, values, strict=True):
            if not future.done():
                future.set_result(value)
