"""``create_app(settings)``: middlewares, routes, docs and resources. Wiring only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from service import db, jobs
from service.api import (
    batches,
    certificates,
    docs,
    health,
    institution,
    metrics,
    singles,
    uploads,
    verify,
    webhooks,
)
from service.api.common import LARGE_PARSE
from service.api.middleware import auth_middleware, request_middleware, stamp_request_id
from service.auth import TokenToucher
from service.config import Settings
from service.keys import DSN, IN_FLIGHT, POOL, SECOND_CONNECTIONS, SETTINGS, TOKEN_TOUCHER
from service.maintenance import maintenance_ctx
from service.queue.wiring import workers_ctx
from service.resources import CPU, FILES, cpu_ctx, files_ctx, io_threads_ctx
from service.webhooks.ssrf import make_client_session

CleanupContext = Callable[[web.Application], AsyncIterator[None]]
WEBHOOK_HTTP = web.AppKey("webhook_http", aiohttp.ClientSession)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with db.database_url(settings.database_url, settings.data_dir) as dsn:
        app[DSN] = dsn
        yield


async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await db.create_pool(
        app[DSN],
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        timeout_s=settings.db_command_timeout_s,
    )
    try:
        if settings.migrate_on_start:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        app[POOL] = pool
        app[SECOND_CONNECTIONS] = asyncio.Semaphore(settings.db_pool_max // 2)
        yield
    finally:
        await pool.close()


async def token_toucher_ctx(app: web.Application) -> AsyncIterator[None]:
    async with TokenToucher(app[POOL]).running() as toucher:
        app[TOKEN_TOUCHER] = toucher
        yield


async def webhook_http_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = make_client_session(
        allow_private=settings.webhooks_allow_private, timeout_s=settings.webhook_timeout_s
    )
    async with session:
        app[WEBHOOK_HTTP] = session
        yield


def job_types(app: web.Application) -> list[jobs.JobType]:
    deps = jobs.Deps(
        pool=app[POOL],
        files=app[FILES],
        cpu=app[CPU],
        settings=app[SETTINGS],
        http=app[WEBHOOK_HTTP],
    )
    return jobs.job_types(deps)


def create_app(
    settings: Settings,
    *,
    extra_routes: Iterable[web.RouteDef] = (),
    extra_contexts: Iterable[CleanupContext] = (),
) -> web.Application:
    app = web.Application(
        middlewares=[request_middleware, auth_middleware],
        # JSON bodies; uploads are streamed and capped apart (MAX_UPLOAD_BYTES)
        client_max_size=settings.max_json_body_bytes,
    )
    app[SETTINGS] = settings
    app.on_response_prepare.append(stamp_request_id)
    app[LARGE_PARSE] = asyncio.Semaphore(1)
    app[IN_FLIGHT] = set()
    app[metrics.METRICS] = registry = CollectorRegistry()
    app.cleanup_ctx.extend(
        [
            io_threads_ctx,
            database_ctx,
            pool_ctx,
            token_toucher_ctx,
            files_ctx,
            cpu_ctx,
            maintenance_ctx,
            webhook_http_ctx,
            workers_ctx(job_types, registry=registry),
            *extra_contexts,
        ]
    )
    # batches before certificates: "/certificate-vault/batches" must not match "/{uuid}"
    modules = (
        health,
        metrics,
        institution,
        uploads,
        batches,
        certificates,
        singles,
        verify,
        webhooks,
    )
    for module in modules:
        app.router.add_routes(module.routes)
    app.router.add_routes(list(extra_routes))
    docs.setup_docs(app)
    return app
