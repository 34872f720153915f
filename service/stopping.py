"""``vault-service serve`` and stop signals.

aiohttp stops on the first SIGINT or SIGTERM: it stops listening, waits for the requests in
progress, then runs the cleanup (where the job engine drains). Here the engine stops claiming at
once and drains while aiohttp waits, rather than after; and a later signal, which would break
off the cleanup with a traceback, stops at once instead: running jobs go back to the queue,
requests in progress are cut short, and the rest of the cleanup (pools, the embedded
PostgreSQL) still runs.
"""

from __future__ import annotations

import logging

from aiohttp import web

from service.keys import IN_FLIGHT
from service.queue.wiring import ENGINE, on_signals

log = logging.getLogger(__name__)


async def stop_gracefully_then_at_once(app: web.Application) -> None:
    """An ``on_shutdown`` callback (of ``serve`` only: it takes over the process's signals)."""
    engine, requests = app.get(ENGINE), app[IN_FLIGHT]
    if engine is not None:
        engine.begin_stop()

    def at_once() -> None:
        log.warning("stopping at once: jobs go back to the queue, requests are cut short")
        if engine is not None:
            engine.hurry()
        for task in list(requests):
            task.cancel()

    on_signals(at_once)
