"""Typed application state keys (``web.AppKey``): everything an app holds lives under these."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.auth import TokenToucher
from service.config import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
DSN = web.AppKey("dsn", str)
TOKEN_TOUCHER = web.AppKey("token_toucher", TokenToucher)
