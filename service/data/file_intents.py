"""SQL for file intents: storage keys whose files may have no row naming them (sql/0007)."""

from __future__ import annotations

from service.data import Connection


async def add(conn: Connection, *, storage_keys: list[str], sweeping: bool = False) -> None:
    """``sweeping``: the caller deletes these files now (and removes the intents after)."""
    await conn.execute(
        "INSERT INTO file_intents (storage_key, sweeping) SELECT unnest($1::text[]), $2"
        " ON CONFLICT (storage_key) DO UPDATE"
        " SET sweeping = file_intents.sweeping OR excluded.sweeping",
        storage_keys,
        sweeping,
    )


async def resolve(conn: Connection, *, storage_key: str) -> bool:
    """The file now belongs to a row: nothing left to clean up. False when a sweeper took the
    intent first (and so is deleting the file): the row must not be written then."""
    status = await conn.execute(
        "DELETE FROM file_intents WHERE storage_key = $1 AND NOT sweeping", storage_key
    )
    return bool(status == "DELETE 1")


async def claim_stale(conn: Connection, *, older_than_s: float, limit: int) -> list[str]:
    """Take intents old enough that no request can still be writing their file: marked as
    being swept, their time re-armed so that after a crash they come back only later."""
    rows = await conn.fetch(
        "UPDATE file_intents SET sweeping = true, created_at = now()"
        " WHERE storage_key = ANY (ARRAY(SELECT storage_key FROM file_intents"
        " WHERE created_at < now() - make_interval(secs => $1)"
        " ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING storage_key",
        older_than_s,
        limit,
    )
    return [row["storage_key"] for row in rows]


async def remove(conn: Connection, *, storage_keys: list[str]) -> None:
    await conn.execute("DELETE FROM file_intents WHERE storage_key = ANY($1::text[])", storage_keys)
