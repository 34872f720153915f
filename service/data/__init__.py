"""The data-access layer: every SQL statement of the service lives in this package.

Functions take the connection (the caller owns the transaction) and keyword-only arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from the pool: data functions accept either.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# The database away, restarting or refusing a statement: what a caller that can try again later
# catches.
DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
