"""Pages of lists; one page of the certificate list: its rows and its total, a search bounded
by a window."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.data import Connection
from service.data import certificates as certificate_data
from service.data.certificates import ListFilter


@dataclass(frozen=True, slots=True)
class Page:
    """The page a list request asks for (``page``, ``per_page``), and its rows' SQL window."""

    number: int
    size: int

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> Page:
        return cls(number=query["page"], size=query["per_page"])

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


@dataclass(frozen=True, slots=True)
class CertificatePage:
    rows: list[asyncpg.Record]
    total: int
    truncated: bool  # a search matched more certificates than its window lists


async def certificate_page(
    pool: asyncpg.Pool,
    filters: ListFilter,
    *,
    page: Page,
    window: int,
    second_connections: asyncio.Semaphore,
) -> CertificatePage:
    """Rows and total; a free-text search lists (and counts) only its ``window`` newest matches.

    Counting every match of a word that most certificates share means visiting most of the
    table; a search window (GitHub's search works the same way) keeps every search fast.
    """
    per_page, offset = page.size, page.offset
    async with pool.acquire() as conn:
        if not filters.search:
            rows = await _rows(conn, filters, limit=per_page, offset=offset)
            total = known_total(rows, limit=per_page, offset=offset)
            if total is None:
                total = await certificate_data.count_matches(conn, filters=filters, at_most=None)
            return CertificatePage(rows, total, truncated=False)
        limit = min(per_page, window - offset)
        if second_connections.locked():
            rows = await _rows(conn, filters, limit=limit, offset=offset)
            matches = known_total(rows, limit=limit, offset=offset)
            if matches is None:
                matches = await _count(conn, filters, at_most=window + 1)
        else:
            async with second_connections:
                rows, matches = await _rows_and_count(pool, conn, filters, limit, offset, window)
    return CertificatePage(rows, min(matches, window), truncated=matches > window)


def known_total(rows: list[asyncpg.Record], *, limit: int, offset: int) -> int | None:
    """A page that is not full ends the list: its total needs no count."""
    if len(rows) < limit and (rows or offset == 0):
        return offset + len(rows)
    return None


async def _rows_and_count(
    pool: asyncpg.Pool,
    conn: Connection,
    filters: ListFilter,
    limit: int,
    offset: int,
    window: int,
) -> tuple[list[asyncpg.Record], int]:
    """The count runs on a second connection while the rows are read (PostgreSQL runs both
    scans at once), and is cancelled when the page turns out not to be full."""
    counting = asyncio.create_task(_count_apart(pool, filters, at_most=window + 1))
    counting.add_done_callback(_retrieve)
    try:
        rows = await _rows(conn, filters, limit=limit, offset=offset)
        known = known_total(rows, limit=limit, offset=offset)
        return rows, known if known is not None else await counting
    finally:
        counting.cancel()  # nothing when it is done


def _retrieve(task: asyncio.Task[int]) -> None:
    """A cancelled count's error is of no interest; reading it keeps asyncio from logging it."""
    if not task.cancelled():
        task.exception()


async def _rows(
    conn: Connection, filters: ListFilter, *, limit: int, offset: int
) -> list[asyncpg.Record]:
    if limit <= 0:
        return []
    return await certificate_data.list_certificates(
        conn, filters=filters, limit=limit, offset=offset
    )


async def _count(conn: Connection, filters: ListFilter, *, at_most: int) -> int:
    return await certificate_data.count_matches(conn, filters=filters, at_most=at_most)


async def _count_apart(pool: asyncpg.Pool, filters: ListFilter, *, at_most: int) -> int:
    async with pool.acquire() as conn:
        return await _count(conn, filters, at_most=at_most)
