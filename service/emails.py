"""The recipient email job: one message per certificate, sent over SMTP or written as .eml."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from email.message import EmailMessage
from functools import partial
from pathlib import Path

import asyncpg

from service.coalesce import Coalesced
from service.data import Connection
from service.data import emails as email_data
from service.files.placement import make_top_directory, sweep_directories
from service.jobs import Deps
from service.mail import compose, send
from service.pipeline import mail_domain
from service.queue.types import Finalizer, Grouped, JobContext, PermanentFailure, Tallies
from service.verification import verification_url

log = logging.getLogger(__name__)

# .eml files written in one thread hop at most: a batch's fsyncs run one after another
EML_BATCH = 32
# Under the outbox: each process's directory for the files it writes (then renamed), and how
# long another's, idle, is kept (with what a process killed while writing left in it).
SCRATCH_DIR = ".tmp"
STALE_SCRATCH_S = 3600


def compose_email(deps: Deps, row: dict[str, object]) -> compose.CertificateEmail:
    base = deps.settings.base_url
    try:
        return compose.compose_certificate_email(
            certificate_uuid=str(row["uuid"]),
            recipient_name=str(row["full_name"]),
            recipient_email=str(row["applicant_email"]),
            certificate_title=str(row["certificate_title"]),
            institution_name=str(row["institution_name"]),
            verify_url=verification_url(base, str(row["reference_id"])),
            sender=deps.settings.mail_from,
            message_id_domain=mail_domain(base),
        )
    except ValueError as exc:
        raise PermanentFailure(f"The email cannot be composed: {exc}") from None


async def send_over_smtp(smtp_url: str, message: EmailMessage) -> None:
    try:
        await send.send_message(message, send.parse_smtp_url(smtp_url))
    except send.MailError as exc:
        if exc.permanent:
            raise PermanentFailure(str(exc)) from None
        raise


class EmlWriter:
    """No SMTP server: the messages of the jobs running at once as ``.eml`` files, one thread
    hop and one directory fsync for them all (``Coalesced``: an error writing them fails every
    job of the batch, and each retries; a batch abandoned by its jobs still finishes in its
    thread, harmlessly, as a retry writes the same files). Each is written in a directory of
    this process's own first, placed afresh on disk (``files.placement``), then renamed."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._scratch = directory / SCRATCH_DIR / secrets.token_hex(8)
        self._written_before = False  # the first write makes the directory's entry durable

    async def __call__(self, files: list[tuple[str, bytes]]) -> list[Path]:
        first = not self._written_before
        if first:
            await asyncio.to_thread(self._place_scratch)
        paths = await asyncio.to_thread(
            send.write_emls, files, self._directory, scratch=self._scratch, parent_too=first
        )
        self._written_before = True
        return paths

    def _place_scratch(self) -> None:
        make_top_directory(self._scratch.parent)
        sweep_scratch(self._directory, own=self._scratch.name)


def sweep_scratch(outbox: Path, *, own: str = "") -> int:
    """What processes killed while writing ``.eml`` files left, and the outbox's scratch
    directories idle for an hour (``own`` kept; a live process whose directory went makes it
    again with its next file). The files removed."""
    return sweep_directories(
        outbox / SCRATCH_DIR, send.EML_TEMP_SUFFIX, own=own, older_than_s=STALE_SCRATCH_S
    )


async def load_emails(deps: Deps, outbox_ids: list[int]) -> list[asyncpg.Record | None]:
    async with deps.pool.acquire() as conn:
        return await email_data.load_emails(conn, outbox_ids=outbox_ids)


async def record_sent(conn: Connection, outbox_ids: Sequence[int]) -> list[Tallies]:
    """The finalizer of sent emails, a flush of them at once."""
    await email_data.mark_sent(conn, outbox_ids=outbox_ids)
    return [None] * len(outbox_ids)


class EmailJobs:
    """Sending a certificate's email, a job each; the reads (and ``.eml`` writes) of the jobs
    running at once are shared, and their finalizers are written a flush at a time."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._load: Coalesced[int, asyncpg.Record | None] = Coalesced(partial(load_emails, deps))
        writer = EmlWriter(deps.settings.outbox_dir)
        self._write: Coalesced[tuple[str, bytes], Path] = Coalesced(writer, at_most=EML_BATCH)

    async def send(self, ctx: JobContext) -> Finalizer | None:
        assert ctx.ref_id is not None  # email jobs always name their outbox row
        row = await self._load(ctx.ref_id)
        # sent, failed, or cancelled with its certificate's revocation: nothing to send
        if row is None or row["status"] != "pending" or row["certificate_status"] != "generated":
            return None
        composed = compose_email(self._deps, dict(row))
        smtp_url = self._deps.settings.smtp_url
        if smtp_url is None:
            try:
                eml = send.eml_name(composed.message_id), composed.as_bytes()
            except ValueError as exc:  # its own problem: not for the others written with it
                raise PermanentFailure(f"The email cannot be written: {exc}") from None
            await self._write(eml)
        else:
            await send_over_smtp(smtp_url, composed.as_message())
        return Grouped(record_sent, ctx.ref_id)


async def email_failed(conn: Connection, ctx: JobContext, error: str) -> None:
    assert ctx.ref_id is not None
    log.warning("email %s failed: %s", ctx.ref_id, error)
    await email_data.mark_failed(conn, outbox_id=ctx.ref_id, error=error)
