"""Bulk intake: validate every entry, then commit the batch, its certificates and their jobs
in one transaction. All or nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from service import errors, jobs
from service.data import Connection
from service.data import batches as batch_data
from service.data import certificates as certificate_data
from service.data import uploads as upload_data
from service.entries import check_entries
from service.webhooks import events

UNRESOLVED_MESSAGE = "Some file_ids could not be resolved"
DUPLICATES_MESSAGE = "Duplicate entries found"
INVALID_MESSAGE = "The given data was invalid."

Recorder = Callable[[Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Accepted:
    batch_uuid: uuid.UUID
    total: int

    def body(self) -> dict[str, Any]:
        return {
            "message": "Bulk vault upload queued for processing",
            "data": {"batch_id": str(self.batch_uuid), "total": self.total, "status": "processing"},
        }


@contextlib.contextmanager
def listed_errors() -> Iterator[None]:
    """Every 422 of the bulk endpoint has ``errors`` as a list of strings, the seed page's
    shape: also a problem with the body, its ``entries`` or the Idempotency-Key header."""
    try:
        yield
    except errors.BulkValidationError:
        raise
    except errors.FieldValidationError as exc:
        lines = [line for messages in exc.errors.values() for line in messages]
        raise errors.BulkValidationError(exc.message, lines) from None
    except errors.Unprocessable as exc:
        raise errors.BulkValidationError(exc.message, [exc.message]) from None


def read_entries(body: dict[str, Any], *, max_entries: int) -> list[Any]:
    entries = body.get("entries")
    if entries is None:
        raise errors.FieldValidationError.single("entries", "The entries field is required.")
    if not isinstance(entries, list):
        raise errors.FieldValidationError.single("entries", "The entries field must be an array.")
    if not entries:
        raise errors.FieldValidationError.single(
            "entries", "The entries field must have at least 1 items."
        )
    if len(entries) > max_entries:
        raise errors.FieldValidationError.single(
            "entries", f"The entries field must not have more than {max_entries} items."
        )
    return entries


Indexed = list[tuple[int, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Checked:
    """A bulk body after the checks that need no database: its valid entries (with their
    index) and the problems of each kind found so far."""

    entries: Indexed
    invalid: list[str]
    duplicates: list[str]


def duplicate_problems(entries: Indexed) -> list[str]:
    """The same file_id twice, or the same recipient, title and issue date twice."""
    problems = []
    by_file: dict[uuid.UUID, int] = {}
    by_identity: dict[tuple[str, str, Any], int] = {}
    for index, entry in entries:
        first = by_file.setdefault(entry["file_id"], index)
        if first != index:
            problems.append(
                f"Entry {index}: file_id {entry['file_id']} is also used by entry {first}"
            )
        identity = (
            entry["applicant_email"].lower(),
            entry["certificate_title"],
            entry["issue_date"],
        )
        first = by_identity.setdefault(identity, index)
        if first != index:
            problems.append(
                f"Entry {index}: duplicate of entry {first} (same applicant_email,"
                " certificate_title and issue_date)"
            )
    return problems


def check(body: dict[str, Any], *, max_entries: int) -> Checked:
    valid, invalid = check_entries(read_entries(body, max_entries=max_entries))
    return Checked(valid, invalid, duplicate_problems(valid))


async def take_uploads(
    conn: Connection, *, institution_id: int, checked: Checked
) -> list[asyncpg.Record]:
    """Consume each valid entry's upload. Any problem, of any kind (unknown, foreign, expired
    or used file_ids among them), is a 422 that lists them all; the transaction, rolled back,
    consumed nothing."""
    entries = checked.entries
    rows = await upload_data.take_uploads(
        conn, institution_id=institution_id, file_ids=[e["file_id"] for _, e in entries]
    )
    by_uuid = {row["uuid"]: row for row in rows}
    missing = [
        f"Entry {index}: file_id {entry['file_id']} not found"
        for index, entry in entries
        if entry["file_id"] not in by_uuid
    ]
    rejection = _rejection(checked, missing)
    if rejection is not None:
        raise rejection
    return [by_uuid[entry["file_id"]] for _, entry in entries]


def _rejection(checked: Checked, unresolved: list[str]) -> errors.BulkValidationError | None:
    """Every problem, kind by kind, under the first kind's message; None when there is none."""
    kinds = (
        (INVALID_MESSAGE, checked.invalid),
        (DUPLICATES_MESSAGE, checked.duplicates),
        (UNRESOLVED_MESSAGE, unresolved),
    )
    found = [(message, lines) for message, lines in kinds if lines]
    if not found:
        return None
    return errors.BulkValidationError(found[0][0], [line for _, lines in found for line in lines])


def certificate_record(
    entry: dict[str, Any], upload: asyncpg.Record, **owner: Any
) -> tuple[Any, ...]:
    """A row in ``certificate_data.COPY_COLUMNS`` order."""
    return (
        owner["institution_id"],
        owner["batch_id"],
        owner["entry_index"],
        owner["trigger_context"],
        entry["certificate_title"],
        entry["full_name"],
        entry["applicant_email"],
        entry["issue_date"],
        entry["details"],
        upload["uuid"],
        upload["storage_key"],
        upload["file_name"],
        upload["mime_type"],
        upload["size"],
        upload["sha256"],
    )


async def submit(
    pool: asyncpg.Pool,
    *,
    institution_id: int,
    checked: Checked,
    per_job: int,
    record_response: Recorder | None = None,
) -> Accepted:
    async with pool.acquire() as conn, conn.transaction():
        uploads = await take_uploads(conn, institution_id=institution_id, checked=checked)
        entries = [entry for _, entry in checked.entries]
        batch = await batch_data.insert_batch(
            conn, institution_id=institution_id, total=len(entries)
        )
        records = [
            certificate_record(
                entry,
                uploads[index],
                institution_id=institution_id,
                batch_id=batch["id"],
                entry_index=index,
                trigger_context="bulk_upload",
            )
            for index, entry in enumerate(entries)
        ]
        await certificate_data.copy_certificates(conn, records=records)
        await certificate_data.enqueue_batch(
            conn,
            batch_id=batch["id"],
            kinds=(jobs.PROCESS_CERTIFICATES, jobs.PROCESS_CERTIFICATE),
            per_job=per_job,
            shared_max_bytes=jobs.SHARED_JOB_MAX_BYTES,
        )
        await events.emit_batch_created(conn, institution_id=institution_id, batch_id=batch["id"])
        accepted = Accepted(batch["uuid"], len(entries))
        if record_response is not None:
            await record_response(conn, accepted.body())
    return accepted
