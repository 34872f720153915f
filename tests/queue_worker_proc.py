"""A job engine in a process of its own, for the crash tests.

``python -m tests.queue_worker_proc DSN LEASE_S DELAY_S DRAIN_S``: runs ``record`` jobs (each
sleeps DELAY_S, then its finalizer logs the completion) until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from service.config import Settings
from service.queue import Shutdown, run_worker
from tests.queue_helpers import recording_type


async def main(dsn: str, lease_s: float, delay_s: float, drain_s: float) -> None:
    settings = Settings(
        database_url=dsn,
        workers=8,
        job_lease_s=lease_s,
        job_timeout_s=lease_s * 0.8,
        poll_interval_s=0.2,
        drain_timeout_s=drain_s,
        db_pool_min=1,
        db_pool_max=4,
        migrate_on_start=False,
    )
    shutdown = Shutdown()
    shutdown.on_signals()
    job_type = recording_type("record", delay_s=delay_s, worker=str(os.getpid()))
    await run_worker(settings, dsn, [job_type], shutdown)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    dsn, lease_s, delay_s, drain_s = sys.argv[1:5]
    asyncio.run(main(dsn, float(lease_s), float(delay_s), float(drain_s)))
