"""Processing one certificate: reference id, QR code and barcode, verified PDF, recipient.

Heavy work happens outside any transaction; the effects (``generated``, the outbox row, the
batch counters) are written by the finalizer, inside the job engine's guarded transaction,
so a re-run after a crash produces no second email and no double count. Artifacts go to keys
derived from the certificate, so a re-run overwrites rather than duplicates them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlsplit

import asyncpg

from service.artifacts import ArtifactError, new_reference_id, render_artifacts
from service.artifacts.on_disk import OriginalMissing, RenderedToDisk, render_to_disk
from service.coalesce import Coalesced
from service.data import Connection
from service.data import batches as batch_data
from service.data import emails as email_data
from service.data import processing as processing_data
from service.data import recipients as recipient_data
from service.files.base import FileMissing, StorageError
from service.files.local import LocalFileStore
from service.jobs import Deps, enqueue_emails
from service.mail.compose import ascii_domain, certificate_message_id
from service.queue.types import (
    Finalizer,
    Grouped,
    JobContext,
    JobError,
    PermanentFailure,
    Tallies,
    Tally,
)
from service.verification import verification_url
from service.webhooks import events

log = logging.getLogger(__name__)

REFERENCE_ID_TRIES = 3
FALLBACK_MAIL_DOMAIN = "vault.localhost"


# Certificates whose verified PDFs share a directory: consecutive ids, as a chunk's are.
CERTIFICATES_PER_DIRECTORY_BITS = 10


def verified_pdf_key(certificate_id: int, certificate_uuid: str) -> str:
    """Derived from the certificate alone (a re-run overwrites, never duplicates), in a
    directory of 1,024 consecutive certificates: a chunk's PDFs are published into one
    directory, fsynced once (into up to sixteen when keyed by uuid), and none grows past it."""
    directory = certificate_id >> CERTIFICATES_PER_DIRECTORY_BITS
    return f"certificates/{directory:x}/{certificate_uuid}.pdf"


def render_timeout_s(deps: Deps) -> float:
    """Inside the job's own time limit, so the render is stopped before the job is."""
    return deps.settings.job_timeout_s * 0.8


def mail_domain(base_url: str) -> str:
    """The public host, for Message-IDs; one that is no DNS name (an IP address, a container
    name with ``_``) gives ``vault.localhost`` instead of failing every certificate."""
    host = urlsplit(base_url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        with contextlib.suppress(ValueError):
            return ascii_domain(host, field="PUBLIC_BASE_URL")
    return FALLBACK_MAIL_DOMAIN


@contextlib.contextmanager
def rendering_errors() -> Iterator[None]:
    """What a failure to read, render or store a certificate's files means for its job."""
    try:
        yield
    except ArtifactError as exc:
        raise PermanentFailure(str(exc)) from None
    except (FileMissing, OriginalMissing):
        raise PermanentFailure("The original file is missing from storage.") from None
    except StorageError as exc:
        raise JobError(f"Storage unavailable: {exc}") from None
    except TimeoutError:
        raise JobError("Rendering took too long and was stopped.") from None
    except BrokenProcessPool:
        raise JobError("The rendering process stopped; the certificate will be retried.") from None


async def produce(deps: Deps, certificate: asyncpg.Record) -> processing_data.GeneratedArtifacts:
    """The verified PDF in the file store, the codes for the database (stored with the row)."""
    pdf_key = verified_pdf_key(certificate["id"], str(certificate["uuid"]))
    with rendering_errors():
        if isinstance(deps.files, LocalFileStore):
            return await render_in_place(deps, deps.files, certificate, pdf_key)
        return await render_and_store(deps, certificate, pdf_key)


async def render_in_place(
    deps: Deps, files: LocalFileStore, certificate: asyncpg.Record, pdf_key: str
) -> processing_data.GeneratedArtifacts:
    """Files on this machine: the render process reads the original and writes the PDF
    (``artifacts.on_disk``); it is published under its key here, durably, by this job alone."""
    rendered = await deps.cpu.run_limited(
        render_timeout_s(deps),
        render_to_disk,
        files.root,
        files.pending_dir,
        certificate["original_key"],
        pdf_key,
        certificate["original_mime"],
        **stamp_fields(deps, certificate),
    )
    await files.publish(rendered.pending, pdf_key)
    return published_artifacts(rendered, pdf_key)


def published_artifacts(
    rendered: RenderedToDisk, pdf_key: str
) -> processing_data.GeneratedArtifacts:
    return processing_data.GeneratedArtifacts(
        qr_code_svg=rendered.qr_svg,
        barcode_svg=rendered.barcode_svg,
        verified_pdf_key=pdf_key,
        verified_pdf_size=rendered.verified_pdf_size,
        verified_pdf_sha256=rendered.verified_pdf_sha256,
    )


async def render_and_store(
    deps: Deps, certificate: asyncpg.Record, pdf_key: str
) -> processing_data.GeneratedArtifacts:
    """Remote storage (S3): the original comes here, goes to a render process, and its PDF
    comes back to be stored."""
    async with deps.cpu.slots:  # an original is read only when a render process is near
        original = await deps.files.get_bytes(certificate["original_key"])
        artifacts = await deps.cpu.run_limited(
            render_timeout_s(deps),
            render_artifacts,
            original,
            certificate["original_mime"],
            **stamp_fields(deps, certificate),
        )
    await deps.files.put_bytes(pdf_key, artifacts.verified_pdf, "application/pdf")
    return processing_data.GeneratedArtifacts(
        qr_code_svg=artifacts.qr_svg,
        barcode_svg=artifacts.barcode_svg,
        verified_pdf_key=pdf_key,
        verified_pdf_size=len(artifacts.verified_pdf),
        verified_pdf_sha256=artifacts.verified_pdf_sha256,
    )


def stamp_fields(deps: Deps, certificate: asyncpg.Record) -> dict[str, str]:
    reference_id: str = certificate["reference_id"]
    return {
        "reference_id": reference_id,
        "verify_url": verification_url(deps.settings.base_url, reference_id),
        "institution_name": certificate["institution_name"],
    }


async def start_many(deps: Deps, certificate_ids: list[int]) -> list[asyncpg.Record | None]:
    """Processing, each with a reference id (a fresh random one collides with odds ~1e-9;
    then all are tried again with new ones, the others keeping the id they were given)."""
    for _ in range(REFERENCE_ID_TRIES):
        reference_ids = [new_reference_id() for _ in certificate_ids]
        try:
            async with deps.pool.acquire() as conn:
                started = await processing_data.start_processing(
                    conn, certificate_ids=certificate_ids, reference_ids=reference_ids
                )
        except asyncpg.UniqueViolationError:
            continue
        return [started.get(certificate_id) for certificate_id in certificate_ids]
    raise JobError("Could not assign a unique reference id.")


async def find_recipients(deps: Deps, emails: list[str]) -> list[int | None]:
    async with deps.pool.acquire() as conn:
        return await recipient_data.find_recipients(conn, emails=emails)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """What a processed certificate's finalizer records."""

    generated: processing_data.Generated
    message_id: str

    @classmethod
    def of(
        cls,
        certificate: asyncpg.Record,
        stored: processing_data.GeneratedArtifacts,
        recipient_id: int | None,
        mail_domain: str,
    ) -> Finished:
        generated = processing_data.Generated(
            certificate_id=certificate["id"], artifacts=stored, recipient_id=recipient_id
        )
        message_id = certificate_message_id(str(certificate["uuid"]), mail_domain)
        return cls(generated=generated, message_id=message_id)


@dataclass(frozen=True, slots=True)
class RecordGenerated:
    """The finalizer of processed certificates, a flush of them at once: ``generated`` with
    their codes, outbox rows and email jobs for those without an account, the ``approved``
    webhooks, their batches' counts. Equal for every job of a process, so they group."""

    base_url: str

    async def __call__(self, conn: Connection, items: Sequence[Finished]) -> list[Tallies]:
        ids = [item.generated.certificate_id for item in items]
        if len(set(ids)) != len(ids):
            # two jobs of one certificate: the flush falls back to one finalizer at a time
            raise ValueError("a certificate twice in one group")
        rows = await processing_data.mark_generated(
            conn, certificates=[item.generated for item in items]
        )
        await self._queue_emails(conn, [i for i in items if i.generated.certificate_id in rows])
        if rows:
            await events.emit_certificates(
                conn, certificate_ids=sorted(rows), event=events.APPROVED, base_url=self.base_url
            )
        return [
            batch_tally(rows[id_]["batch_id"], generated=1) if id_ in rows else None for id_ in ids
        ]

    @staticmethod
    async def _queue_emails(conn: Connection, generated: list[Finished]) -> None:
        unassigned = [item for item in generated if item.generated.recipient_id is None]
        if not unassigned:
            return
        outbox_ids = await email_data.add_to_outbox(
            conn,
            certificate_ids=[item.generated.certificate_id for item in unassigned],
            message_ids=[item.message_id for item in unassigned],
        )
        await enqueue_emails(conn, outbox_ids=outbox_ids)


class CertificateJobs:
    """Processing a certificate, a job each. The one-row reads of the jobs running at once
    share statements (``Coalesced``), and their finalizers are written a flush at a time."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._start: Coalesced[int, asyncpg.Record | None] = Coalesced(partial(start_many, deps))
        self._recipient: Coalesced[str, int | None] = Coalesced(partial(find_recipients, deps))
        self._record = RecordGenerated(deps.settings.base_url)
        self._mail_domain = mail_domain(deps.settings.base_url)

    async def process(self, ctx: JobContext) -> Finalizer | None:
        assert ctx.ref_id is not None  # processing jobs always name their certificate
        deps = self._deps
        certificate = await self._start(ctx.ref_id)
        if certificate is None:
            return None  # no longer pending or processing (generated, revoked): nothing to do
        stored = await produce(deps, certificate)
        recipient_id = await self._recipient(certificate["applicant_email"])
        finished = Finished.of(certificate, stored, recipient_id, self._mail_domain)
        return Grouped(self._record, finished)


async def certificate_failed(conn: Connection, ctx: JobContext, error: str) -> Tallies:
    assert ctx.ref_id is not None
    return await fail_certificate(conn, ctx.ref_id, error)


async def fail_certificate(conn: Connection, certificate_id: int, error: str) -> Tallies:
    """``failed`` with its error, if it was still pending or processing."""
    row = await processing_data.mark_failed(conn, certificate_id=certificate_id, error=error)
    if row is None:
        return None
    log.warning("certificate %s failed: %s", row["uuid"], error)
    await events.emit_certificate(conn, certificate_id=certificate_id, event=events.FAILED)
    return batch_tally(row["batch_id"], failed=1)


def batch_tally(batch_id: int | None, *, generated: int = 0, failed: int = 0) -> list[Tally]:
    """A bulk certificate's outcome, added to its batch's counters when the flush ends."""
    if batch_id is None:
        return []
    return [Tally("batch", batch_id, (generated, failed), write_batch_counts)]


async def write_batch_counts(conn: Connection, batch_id: int, counts: tuple[int, ...]) -> None:
    generated, failed = counts
    batch, finished_now = await batch_data.count_outcome(
        conn, batch_id=batch_id, generated=generated, failed=failed
    )
    if finished_now:
        await events.emit_batch_completed(conn, batch)
