"""SQL for the shared rate-limit counters (fixed windows in the ``rate_limits`` table)."""

from __future__ import annotations

from datetime import datetime

from service.data import Connection

# The current window of $3 seconds by the database's clock (or at $4, for tests): every process
# counts into the same row whatever its own clock says.
_WINDOW = (
    "SELECT to_timestamp(floor(extract(epoch FROM c.at) / $3) * $3) AS start, c.at"
    " FROM (SELECT coalesce($4::timestamptz, now()) AS at) c"
)

# One round trip: count this request and read the total. Hits stop growing at limit + 1 ($5),
# which is all the limiter needs to know and keeps a flood from overflowing the counter.
HIT = (
    f"WITH w AS ({_WINDOW})"
    " INSERT INTO rate_limits AS r (bucket, subject, window_start, expires_at, hits)"
    " SELECT $1, $2, w.start, w.start + make_interval(secs => $3), 1 FROM w"
    " ON CONFLICT (bucket, subject, window_start)"
    " DO UPDATE SET hits = least(r.hits + 1, $5)"
    " RETURNING r.hits,"
    " ceil(extract(epoch FROM r.expires_at - (SELECT w.at FROM w)))::int AS reset_s"
)

# In batches, so a purge after a long pause never holds one huge delete.
PURGE = (
    "DELETE FROM rate_limits WHERE ctid = ANY(ARRAY("
    " SELECT ctid FROM rate_limits WHERE expires_at <= coalesce($2::timestamptz, now())"
    " LIMIT $1))"
)


async def add_hit(
    conn: Connection,
    *,
    bucket: str,
    subject: str,
    window_s: int,
    cap: int,
    at: datetime | None = None,
) -> tuple[int, int]:
    """Count one hit in the current window; return (hits so far, seconds until the window ends)."""
    row = await conn.fetchrow(HIT, bucket, subject, window_s, at, cap)
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE always returns the row
    return int(row["hits"]), int(row["reset_s"])


async def purge_expired(conn: Connection, *, limit: int, at: datetime | None = None) -> int:
    status = await conn.execute(PURGE, limit, at)
    return int(status.split()[-1])
