"""The set-based finalizer of processed certificates: a flush of them in a few statements, with
the same effects, certificate by certificate, as one finalizer each."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.chunks import ChunkResult, RecordChunks, summed
from service.data import processing as processing_data
from service.data import recipients as recipient_data
from service.pipeline import Finished, RecordGenerated, batch_tally, write_batch_counts
from service.queue.types import Tally
from tests.conftest import TokenFactory, bearer
from tests.vault_helpers import BULK_URL, entry, fake_uploads, institution_id

BASE_URL = "http://vault.test"


async def processing_certificates(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection, count: int
) -> list[int]:
    """A bulk batch of ``count`` (no worker runs in tests' app), all made ``processing``."""
    token = await make_token("all")
    file_ids = await fake_uploads(conn, institution_id=await institution_id(conn), count=count)
    entries = [
        entry(file_id, applicant_email=f"s{n}@example.com") for n, file_id in enumerate(file_ids)
    ]
    response = await client.post(BULK_URL, json={"entries": entries}, headers=bearer(token))
    assert response.status == 202
    rows = await conn.fetch(
        "UPDATE certificates SET status = 'processing',"
        " reference_id = 'VEC-IC-2026' || lpad(to_hex(id), 13, '0') RETURNING id"
    )
    return sorted(row["id"] for row in rows)


def finished(certificate_id: int, recipient_id: int | None = None) -> Finished:
    artifacts = processing_data.GeneratedArtifacts(
        qr_code_svg=b"<svg>qr</svg>",
        barcode_svg=b"<svg>bar</svg>",
        verified_pdf_key=f"certificates/{certificate_id}.pdf",
        verified_pdf_size=100,
        verified_pdf_sha256="0" * 64,
    )
    generated = processing_data.Generated(
        certificate_id=certificate_id, artifacts=artifacts, recipient_id=recipient_id
    )
    return Finished(generated=generated, message_id=f"<certificate-{certificate_id}@vault.test>")


async def test_a_flush_of_certificates_is_recorded_as_each_alone_would_be(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """Four certificates: one with a recipient account (assigned, no email), one revoked in
    the meantime (left as it is, no tally), two emailed; codes stored, batch tallied."""
    first, assigned, revoked, last = await processing_certificates(client, make_token, conn, 4)
    recipient = await recipient_data.add_recipient(conn, email="s1@example.com", name="S One")
    assert recipient is not None
    await conn.execute("UPDATE certificates SET status = 'revoked' WHERE id = $1", revoked)
    items = [
        finished(first),
        finished(assigned, recipient["id"]),
        finished(revoked),
        finished(last),
    ]
    async with conn.transaction():
        tallies = await RecordGenerated(BASE_URL)(conn, items)

    assert [[(t.kind, t.counts) for t in tally or ()] for tally in tallies] == [
        [("batch", (1, 0))],
        [("batch", (1, 0))],
        [],
        [("batch", (1, 0))],
    ]
    statuses = await conn.fetch(
        "SELECT id, status, recipient_id, assigned_at IS NOT NULL AS assigned,"
        " verified_pdf_key FROM certificates ORDER BY id"
    )
    assert [(r["status"], r["recipient_id"], r["assigned"]) for r in statuses] == [
        ("generated", None, False),
        ("generated", recipient["id"], True),
        ("revoked", None, False),
        ("generated", None, False),
    ]
    assert statuses[3]["verified_pdf_key"] == f"certificates/{last}.pdf"
    codes = await conn.fetch("SELECT certificate_id FROM certificate_codes ORDER BY 1")
    assert [r["certificate_id"] for r in codes] == [first, assigned, last]
    outbox = await conn.fetch("SELECT certificate_id, message_id FROM email_outbox ORDER BY 1")
    assert [(r["certificate_id"], r["message_id"]) for r in outbox] == [
        (first, f"<certificate-{first}@vault.test>"),
        (last, f"<certificate-{last}@vault.test>"),
    ]
    email_jobs = await conn.fetch("SELECT ref_id FROM jobs WHERE kind = 'email.send' ORDER BY 1")
    outbox_ids = await conn.fetch("SELECT id FROM email_outbox ORDER BY 1")
    assert [r["ref_id"] for r in email_jobs] == [r["id"] for r in outbox_ids]


async def test_recording_again_writes_nothing_twice(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """A second run (a stale worker's flush, say) finds them generated: no tally, one outbox
    row and one email job each."""
    ids = await processing_certificates(client, make_token, conn, 2)
    record = RecordGenerated(BASE_URL)
    await record(conn, [finished(n) for n in ids])
    assert await record(conn, [finished(n) for n in ids]) == [None, None]
    assert await conn.fetchval("SELECT count(*) FROM email_outbox") == 2
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'email.send'") == 2


async def test_a_certificate_twice_in_one_group_is_refused(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """The flush then records them one at a time: the second finds it generated already."""
    [certificate_id] = await processing_certificates(client, make_token, conn, 1)
    with pytest.raises(ValueError, match="twice"):
        await RecordGenerated(BASE_URL)(conn, [finished(certificate_id)] * 2)
    assert await conn.fetchval("SELECT count(*) FROM email_outbox") == 0


async def test_a_flush_of_chunks_gives_each_its_own_counts_and_hands_on_the_retried(
    client: TestClient, make_token: TokenFactory, conn: asyncpg.Connection
) -> None:
    """Two chunks in one call: each gets the tallies of its own certificates (generated and
    failed); one to retry gets a job of its own, after a pause."""
    first, second, bad, again, other = await processing_certificates(client, make_token, conn, 5)
    chunks = [
        ChunkResult(
            finished=[finished(first), finished(second)],
            failed=[(bad, "The original file is missing from storage.")],
            retried=[again],
        ),
        ChunkResult(finished=[finished(other)], failed=[], retried=[]),
    ]
    async with conn.transaction():
        tallies = await RecordChunks(RecordGenerated(BASE_URL))(conn, chunks)

    assert [[(t.kind, t.counts) for t in tally or ()] for tally in tallies] == [
        [("batch", (2, 1))],  # summed: one write of the batch's counters per chunk
        [("batch", (1, 0))],
    ]
    rows = await conn.fetch("SELECT status, error FROM certificates ORDER BY id")
    assert [r["status"] for r in rows] == [
        "generated",
        "generated",
        "failed",
        "processing",
        "generated",
    ]
    assert rows[2]["error"] == "The original file is missing from storage."
    handed_on = await conn.fetch(
        "SELECT ref_id, run_at > now() AS later FROM jobs WHERE kind = 'certificate.process'"
    )
    assert [(r["ref_id"], r["later"]) for r in handed_on] == [(again, True)]
    assert await conn.fetchval("SELECT count(*) FROM email_outbox") == 3


def test_a_chunks_tallies_are_summed_per_row_and_disagreeing_ones_kept_apart() -> None:
    """The flush refuses tallies of one row that disagree: summing must not hide them."""
    batch = [batch_tally(7, generated=1), batch_tally(7, failed=1), batch_tally(8, generated=1)]
    other_writer = Tally("batch", 7, (1, 0), write_tallies_elsewhere)
    shorter = Tally("batch", 7, (1,), write_batch_counts)
    tallies = summed([t for ts in batch for t in ts] + [other_writer, shorter])
    assert [(t.ref_id, t.counts, t.write) for t in tallies] == [
        (7, (1, 1), write_batch_counts),
        (8, (1, 0), write_batch_counts),
        (7, (1, 0), write_tallies_elsewhere),
        (7, (1,), write_batch_counts),
    ]


async def write_tallies_elsewhere(conn: object, ref_id: int, counts: tuple[int, ...]) -> None:
    raise AssertionError("never written here")
