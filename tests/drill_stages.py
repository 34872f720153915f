"""The stages of drill 1: bring a worker to an exact point of a certificate's processing and
kill it there. Each leaves the worker dead and returns the Message-ID the documented window may
send twice, or None.

A worker is held at a statement by a lock the test holds (it cannot get past it), or frozen by
the SMTP server at the step it reached; then its process group gets SIGKILL.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.drill_helpers import (
    Processes,
    kill,
    open_transaction,
    stored_pdfs,
    terminate,
    wait_for_lock_waiters,
    wait_for_row,
)
from tests.drill_mail import Mailbox
from tests.queue_helpers import count

# The statements a worker is held at (see service/data/processing.py).
START = "WITH starting AS ("
MARK_GENERATED = "WITH generating AS ("


@dataclass
class Drill:
    conn: asyncpg.Connection
    dsn: str
    data_dir: Path
    env: dict[str, str]
    processes: Processes
    mailbox: Mailbox

    def start_worker(self, workers: int) -> subprocess.Popen[bytes]:
        return self.processes.start("worker", {**self.env, "WORKERS": str(workers)})

    def has_pdf(self, uuid: str) -> bool:
        return uuid in stored_pdfs(self.data_dir / "files" / "certificates")


async def kill_after_claim(drill: Drill) -> str | None:
    """The job is leased, its first statement (``start``) waits on our row locks: kill."""
    async with open_transaction(drill.dsn) as blocker:
        await blocker.execute("SELECT id FROM certificates FOR UPDATE")
        worker = drill.start_worker(workers=1)
        waiters = await wait_for_lock_waiters(drill.conn, START)
        kill(worker)
        await terminate(drill.conn, waiters)  # its `start` must not run after the kill
    assert await count(drill.conn, "SELECT count(*) FROM jobs WHERE state = 1") == 1
    assert (
        await count(drill.conn, "SELECT count(*) FROM certificates WHERE status <> 'pending'") == 0
    )
    return None


async def kill_after_store(drill: Drill) -> str | None:
    """Artifacts stored, the finalizer (``generated``, outbox row) waits on our row lock: kill."""
    worker = drill.start_worker(workers=1)
    certificate_id, uuid = await wait_for_row(
        drill.conn, "SELECT id, uuid::text FROM certificates WHERE status = 'processing'"
    )
    async with open_transaction(drill.dsn) as blocker:
        status = await blocker.fetchval(
            "SELECT status FROM certificates WHERE id = $1 FOR UPDATE", certificate_id
        )
        assert status == "processing", "the worker finished before the lock: nothing to test"
        waiters = await wait_for_lock_waiters(drill.conn, MARK_GENERATED)
        kill(worker)
        await terminate(drill.conn, waiters)
    assert drill.has_pdf(uuid)
    assert await count(drill.conn, "SELECT count(*) FROM certificate_codes") == 0
    assert (
        await drill.conn.fetchval("SELECT status FROM certificates WHERE id = $1", certificate_id)
        == "processing"
    )
    assert await count(drill.conn, "SELECT count(*) FROM email_outbox") == 0
    return None


async def kill_after_outbox(drill: Drill) -> str | None:
    """The outbox row is committed and its email job running: frozen at SMTP MAIL, killed."""
    await _kill_at_smtp(drill, "MAIL")
    assert drill.mailbox.messages == []
    assert await count(drill.conn, "SELECT count(*) FROM email_outbox WHERE status = 'pending'")
    return None


async def kill_after_accept(drill: Drill) -> str | None:
    """The SMTP server accepted the message; the worker never learns it: frozen, killed."""
    await _kill_at_smtp(drill, "DATA")
    [message_id] = drill.mailbox.message_ids()
    status = await drill.conn.fetchval(
        "SELECT status FROM email_outbox WHERE message_id = $1", message_id
    )
    assert status == "pending"
    return message_id


async def _kill_at_smtp(drill: Drill, step: str) -> None:
    worker = drill.start_worker(workers=1)
    drill.mailbox.trap(step, worker.pid)
    await asyncio.wait_for(drill.mailbox.sprung.wait(), timeout=60)
    kill(worker)


STAGES: dict[str, Callable[[Drill], Awaitable[str | None]]] = {
    "after_claim": kill_after_claim,
    "after_artifacts_stored": kill_after_store,
    "after_outbox_row": kill_after_outbox,
    "after_smtp_accepted": kill_after_accept,
}
