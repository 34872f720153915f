"""The service's job types: what the engine runs, and how the domain enqueues them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import asyncpg
from aiohttp import web

from service.config import Settings
from service.data import Connection
from service.files.base import FileStore
from service.queue import producer
from service.queue.store import BACKGROUND
from service.queue.types import JobType

__all__ = ["Deps", "JobType", "job_types", "wake_workers"]
from service.cpupool import CpuPool
from service.queue.wiring import ENGINE

PROCESS_CERTIFICATE = "certificate.process"
# several of a batch's certificates (small PDFs, up to CERTIFICATES_PER_JOB) in one job
PROCESS_CERTIFICATES = "certificates.process"
SHARED_JOB_MAX_BYTES = 1024 * 1024
SEND_EMAIL = "email.send"


@dataclass(frozen=True, slots=True)
class Deps:
    """What the job handlers need; built from the app's resources."""

    pool: asyncpg.Pool
    files: FileStore
    cpu: CpuPool
    settings: Settings
    http: aiohttp.ClientSession  # webhook deliveries: SSRF-guarded (webhooks.ssrf)


async def enqueue_processing(
    conn: Connection, *, certificate_ids: Sequence[int], run_at: datetime | None = None
) -> None:
    await producer.enqueue_many(conn, PROCESS_CERTIFICATE, ref_ids=certificate_ids, run_at=run_at)


async def enqueue_emails(conn: Connection, *, outbox_ids: Sequence[int]) -> None:
    await producer.enqueue_many(conn, SEND_EMAIL, ref_ids=outbox_ids, priority=BACKGROUND)


def job_types(deps: Deps) -> list[JobType]:
    from service import chunks, emails, pipeline
    from service.webhooks import deliveries

    return [
        JobType(
            PROCESS_CERTIFICATE,
            pipeline.CertificateJobs(deps).process,
            on_exhausted=pipeline.certificate_failed,
        ),
        JobType(
            PROCESS_CERTIFICATES,
            chunks.CertificateChunks(deps).process,
            on_exhausted=chunks.chunk_exhausted,
        ),
        JobType(
            SEND_EMAIL,
            emails.EmailJobs(deps).send,
            on_exhausted=emails.email_failed,
            max_attempts=8,
        ),
        *deliveries.job_types(deps),
    ]


def wake_workers(app: web.Application) -> None:
    """After committing new jobs: wake this process's engine at once (NOTIFY wakes the rest)."""
    engine = app.get(ENGINE)
    if engine is not None:
        engine.notify_local()
