"""Typed application state keys (``web.AppKey``): everything an app holds lives under these."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from service.auth import TokenToucher
from service.config import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
# Requests that may hold a second pool connection at once (a search's count): fewer than the
# pool's size, so requests waiting for their second connection can never hold them all.
SECOND_CONNECTIONS = web.AppKey("second_connections", asyncio.Semaphore)
DSN = web.AppKey("dsn", str)
TOKEN_TOUCHER = web.AppKey("token_toucher", TokenToucher)
# The tasks serving requests right now: a second stop signal cuts them short (``serve``).
IN_FLIGHT = web.AppKey("in_flight", set[asyncio.Task[object]])
