"""LISTEN on a dedicated connection (never a pooled one), reconnecting with backoff.

While the connection is down the engine keeps polling; on every (re)connect it wakes once to
catch up on notifications it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from service.queue.types import retry_pause

log = logging.getLogger(__name__)

# A silently dead connection (no RST) is noticed by probing it this often.
PROBE_INTERVAL_S = 30.0
CONNECT_TIMEOUT_S = 10.0


class Listener:
    def __init__(self, dsn: str, channel: str, on_notify: Callable[[], None]) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("queue listener connection failed (%r); polling meanwhile", exc)
            await asyncio.sleep(retry_pause(failures))

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": "vault-queue-listener"},
        )
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, self._notified)
            self.connected.set()
            self._on_notify()
            await self._watch(conn, lost)
            log.warning("queue listener connection lost; reconnecting")
        finally:
            self.connected.clear()
            await _close(conn)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        while not lost.is_set():
            try:
                async with asyncio.timeout(PROBE_INTERVAL_S):
                    await lost.wait()
            except TimeoutError:
                await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)

    def _notified(self, *_args: object) -> None:
        self._on_notify()


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=2)
    except Exception:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
