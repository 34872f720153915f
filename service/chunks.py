"""Processing several of a batch's certificates in one job: its small PDFs, up to
``CERTIFICATES_PER_JOB`` to a job (``data.certificates.enqueue_batch``).

What a job costs beside its renders (claiming it, its statements, handing work to a render
process and back, publishing the files) is paid once for them all. Each certificate still ends
as in a job of its own: generated, or failed with its own error when its file cannot be
processed. One that fails for a reason a retry may fix (storage unavailable, a render stopped at
its time limit or its process lost) goes on as a job of its own, with attempts of its own,
enqueued in the transaction that records the others. A chunk that fails as a whole (a database
error, a lost worker) is run again; out of attempts, each of its certificates gets a job of its
own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from service.artifacts.on_disk import (
    NotRendered,
    RenderedToDisk,
    RenderOrder,
    render_many_to_disk,
)
from service.data import Connection
from service.data.processing import GeneratedArtifacts
from service.files.local import LocalFileStore
from service.jobs import Deps, enqueue_processing
from service.pipeline import (
    Finished,
    RecordGenerated,
    fail_certificate,
    find_recipients,
    mail_domain,
    produce,
    published_artifacts,
    rendering_errors,
    stamp_fields,
    start_many,
    verified_pdf_key,
)
from service.queue.outcomes import describe
from service.queue.types import (
    Finalizer,
    Grouped,
    JobContext,
    JobError,
    PermanentFailure,
    Tallies,
    Tally,
    exponential_backoff,
)

log = logging.getLogger(__name__)

# The renders' share of a chunk's time limit (JOB_TIMEOUT_S), waiting for a render process
# included; the rest is for starting, publishing and the recipients.
RENDER_SHARE = 0.75


def chunk_ids(ctx: JobContext) -> list[int]:
    ids = ctx.payload["ids"] if isinstance(ctx.payload, dict) else None
    if not isinstance(ids, list) or not all(type(id_) is int for id_ in ids):
        raise PermanentFailure("A certificates job without its list of certificate ids.")
    return ids


@dataclass(frozen=True, slots=True)
class Unproduced:
    """Why a certificate of a chunk has no artifacts, and whether another attempt may help."""

    error: str
    permanent: bool


def unproduced(exc: Exception) -> Unproduced:
    """What a failure to read, render or store one certificate's files means for it (the
    meaning ``rendering_errors`` gives it in a job of its own)."""
    if isinstance(exc, NotRendered):
        return OUT_OF_TIME
    try:
        with rendering_errors():
            raise exc
    except PermanentFailure as failure:
        return Unproduced(failure.error, permanent=True)
    except JobError as error:
        return Unproduced(str(error), permanent=False)
    except Exception as other:
        return Unproduced(describe(other), permanent=False)


OUT_OF_TIME = Unproduced("Its chunk's time ran out before its render.", permanent=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkResult:
    finished: Sequence[Finished]
    failed: Sequence[tuple[int, str]]  # certificate id, error for people
    retried: Sequence[int]  # certificate ids, each to a job of its own


@dataclass(frozen=True, slots=True)
class RecordChunks:
    """The finalizer of chunks, a flush of them at once: their generated certificates in one
    call of ``RecordGenerated``, their failed ones, jobs for those to retry."""

    record: RecordGenerated

    async def __call__(self, conn: Connection, items: Sequence[ChunkResult]) -> list[Tallies]:
        finished = [each for item in items for each in item.finished]
        generated: Iterator[Tallies] = iter(await self.record(conn, finished) if finished else ())
        per_chunk: list[list[Tally]] = []
        for item in items:
            tallies: list[Tally] = []
            for of_one in itertools.islice(generated, len(item.finished)):
                tallies += of_one or ()
            per_chunk.append(tallies)
        # in id order, as every statement that changes several certificates locks them
        failed = sorted(
            (id_, n, error) for n, item in enumerate(items) for id_, error in item.failed
        )
        for certificate_id, n, error in failed:
            per_chunk[n] += await fail_certificate(conn, certificate_id, error) or []
        retried = [certificate_id for item in items for certificate_id in item.retried]
        if retried:
            # after a first attempt's pause: storage may be down, a render process missing
            run_at = datetime.now(UTC) + timedelta(seconds=exponential_backoff(1))
            await enqueue_processing(conn, certificate_ids=retried, run_at=run_at)
        return [summed(tallies) for tallies in per_chunk]


def summed(tallies: list[Tally]) -> list[Tally]:
    """A chunk's tallies, one per shared row (its batch's counters): the flush would sum its
    sixteen anyway, one at a time. Tallies of one row that disagree (another writer, another
    shape) stay apart, for the flush to refuse as it would have."""
    sums: dict[tuple[str, int, object, int], Tally] = {}
    for tally in tallies:
        key = (tally.kind, tally.ref_id, tally.write, len(tally.counts))
        found = sums.get(key)
        if found is not None:
            counts = tuple(a + b for a, b in zip(found.counts, tally.counts, strict=True))
            tally = replace(found, counts=counts)
        sums[key] = tally
    return list(sums.values())


class CertificateChunks:
    """Processing a chunk of certificates, a job each chunk."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._record = RecordChunks(RecordGenerated(deps.settings.base_url))
        self._mail_domain = mail_domain(deps.settings.base_url)

    async def process(self, ctx: JobContext) -> Finalizer | None:
        deps = self._deps
        # the renders' share of the job's time limit, which counts the wait for a process
        render_until = time.monotonic() + deps.settings.job_timeout_s * RENDER_SHARE
        async with near_render(deps):
            started = [row for row in await start_many(deps, chunk_ids(ctx)) if row is not None]
            if not started:
                return None  # none still pending or processing: nothing to do
            budget_s = render_until - time.monotonic()
            pairs = list(zip(started, await self._produce(started, budget_s), strict=True))
        done = [(row, p) for row, p in pairs if isinstance(p, GeneratedArtifacts)]
        emails = [row["applicant_email"] for row, _ in done]
        recipients = await find_recipients(deps, emails) if emails else []
        finished = [
            Finished.of(row, artifacts, recipient_id, self._mail_domain)
            for (row, artifacts), recipient_id in zip(done, recipients, strict=True)
        ]
        failures = [(row["id"], p) for row, p in pairs if isinstance(p, Unproduced)]
        result = ChunkResult(
            finished=finished,
            failed=[(id_, failure.error) for id_, failure in failures if failure.permanent],
            retried=[id_ for id_, failure in failures if not failure.permanent],
        )
        return Grouped(self._record, result)

    async def _produce(
        self, started: list[asyncpg.Record], budget_s: float
    ) -> Sequence[GeneratedArtifacts | Unproduced]:
        deps = self._deps
        if budget_s <= 0:
            return [OUT_OF_TIME] * len(started)
        if isinstance(deps.files, LocalFileStore):
            return await render_in_place(deps, deps.files, started, budget_s)
        return await produce_each(deps, started, budget_s)


def near_render(deps: Deps) -> AbstractAsyncContextManager[object]:
    """A chunk is started (``processing``) only when a render process is near: the chunks
    that the engine claimed beyond those stay ``pending`` until their turn comes, and the
    first renders of a batch begin without waiting for every claimed chunk's start. Remote
    storage takes the same places a certificate at a time (``pipeline.render_and_store``)."""
    if isinstance(deps.files, LocalFileStore):
        return deps.cpu.slots
    return contextlib.nullcontext()


async def produce_each(
    deps: Deps, started: list[asyncpg.Record], budget_s: float
) -> list[GeneratedArtifacts | Unproduced]:
    """Remote storage: ``pipeline.produce`` for each at once (each its own time limit), those
    not done within ``budget_s`` stopped."""
    tasks = [asyncio.ensure_future(produce_one(deps, row)) for row in started]
    try:
        await asyncio.wait(tasks, timeout=budget_s)
    finally:
        for task in tasks:
            task.cancel()  # the unfinished: a render running is killed
        await asyncio.gather(*tasks, return_exceptions=True)
    return [task.result() if not task.cancelled() else OUT_OF_TIME for task in tasks]


async def produce_one(deps: Deps, certificate: asyncpg.Record) -> GeneratedArtifacts | Unproduced:
    try:
        return await produce(deps, certificate)
    except Exception as exc:  # as a job of its own would see it
        return unproduced(exc)


async def render_in_place(
    deps: Deps, files: LocalFileStore, started: list[asyncpg.Record], budget_s: float
) -> list[GeneratedArtifacts | Unproduced]:
    """The chunk's renders in one call of a render process, their PDFs published in one
    thread hop (``pipeline.render_in_place``, for many). Within ``budget_s``, waiting for a
    process included: none starts in its last fifth (they are handed on), and a call still
    running at its end is stopped (all are handed on)."""
    orders = [
        RenderOrder(
            original_key=row["original_key"],
            verified_pdf_key=verified_pdf_key(row["id"], str(row["uuid"])),
            mime_type=row["original_mime"],
            **stamp_fields(deps, row),
        )
        for row in started
    ]
    stop_at = time.time() + budget_s * 0.8
    try:
        async with asyncio.timeout(budget_s):
            with rendering_errors():
                results = await deps.cpu.run_limited(
                    budget_s, render_many_to_disk, files.root, files.pending_dir, orders, stop_at
                )
    except (TimeoutError, JobError) as error:  # stopped at its time limit, or its process lost
        return [unproduced(error)] * len(orders)
    pending = [
        (result.pending, order.verified_pdf_key)
        for order, result in zip(orders, results, strict=True)
        if isinstance(result, RenderedToDisk)
    ]
    published = iter(await files.publish_many(pending))
    produced: list[GeneratedArtifacts | Unproduced] = []
    for order, result in zip(orders, results, strict=True):
        if not isinstance(result, RenderedToDisk):
            produced.append(unproduced(result))
        elif (not_published := next(published)) is not None:
            produced.append(unproduced(not_published))
        else:
            produced.append(published_artifacts(result, order.verified_pdf_key))
    return produced


async def chunk_exhausted(conn: Connection, ctx: JobContext, error: str) -> Tallies:
    """Out of attempts as a whole: each of its certificates goes on as a job of its own (one
    already generated or failed is then left as it is)."""
    try:
        ids = chunk_ids(ctx)
    except PermanentFailure:
        ids = []
    if not ids:
        log.error("certificates job %d has no list of certificate ids: %r", ctx.job_id, ctx.payload)
        return None
    log.warning(
        "certificates job %d failed (%s): one job each for its certificates", ctx.job_id, error
    )
    await enqueue_processing(conn, certificate_ids=ids)
    return None
