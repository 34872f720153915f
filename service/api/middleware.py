"""The request pipeline: request id and access log, the one error-to-JSON mapping, and auth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import MatchInfoError

from service import auth, errors, ratelimit
from service.api.common import PRINCIPAL, REQUEST_ID, client_address, json_response
from service.keys import IN_FLIGHT, POOL, SETTINGS, TOKEN_TOUCHER

log = logging.getLogger("service.http")
access_log = logging.getLogger("service.access")

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CERTIFICATE_PATH = re.compile(
    r"/business/certificate-vault/(?P<id>[^/]+)(?:/(?P<action>retry)|/(?:download|original))?"
)
# The database is down or restarting: answer 503 rather than hang or 500.
DATABASE_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.ConnectionFailureError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
)


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if REQUEST_ID_PATTERN.fullmatch(given) else uuid.uuid4().hex


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> errors.ServiceError:
    if isinstance(exc, web.HTTPNotFound):
        # certificate routes match UUIDs only (so "bulk" or "batches" never look like one);
        # any other id gets the answer an unknown UUID gets
        certificate = CERTIFICATE_PATH.fullmatch(request.path)
        if certificate and request.method == ("POST" if certificate["action"] else "GET"):
            return errors.NotFound(certificate["id"])
        return errors.RouteNotFound(request.path)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return errors.MethodNotAllowed(request.method, set(exc.allowed_methods))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit_mib = request.app[SETTINGS].max_json_body_bytes / (1024 * 1024)
        return errors.PayloadTooLarge(
            f"The request body is larger than {limit_mib:g} MiB; send the entries in several"
            " smaller requests."
        )
    if isinstance(exc, web.HTTPUnsupportedMediaType):
        return errors.UnsupportedMediaType()
    mapped = errors.ServiceError(exc.reason)
    mapped.status = exc.status  # type: ignore[misc]
    return mapped


def error_response(error: errors.ServiceError, request_id: str) -> web.Response:
    headers = {**error.headers(), "X-Request-ID": request_id}
    return json_response(error.body(), status=error.status, headers=headers)


async def _handle(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.ServiceError as exc:
        return error_response(exc, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(request, exc), request_id)
    except ConnectionResetError:
        log.info("client went away request_id=%s", request_id)
        return error_response(errors.ServiceError("Client closed the connection."), request_id)
    except DATABASE_UNAVAILABLE as exc:
        log.warning("database unavailable: %r request_id=%s", exc, request_id)
        return error_response(errors.ServiceUnavailable(), request_id)
    except Exception:
        log.exception(
            "unhandled error request_id=%s %s %s", request_id, request.method, request.path
        )
        return error_response(errors.InternalError(), request_id)


@contextlib.contextmanager
def _in_flight(request: web.Request) -> Iterator[None]:
    tasks, task = request.app[IN_FLIGHT], asyncio.current_task()
    if task is not None:
        tasks.add(task)
    try:
        yield
    finally:
        tasks.discard(task)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: gives every request an id, maps every error to JSON, logs one line."""
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    with _in_flight(request):
        response = await _handle(request, handler, request_id)
    principal = request.get(PRINCIPAL)
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "request_id": request_id,
            "institution_id": principal.institution_id if principal else None,
        },
    )
    return response


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: also reaches streamed responses, which are sent before the
    middleware sees them."""
    request_id = request.get(REQUEST_ID)
    if request_id and "X-Request-ID" not in response.headers:
        response.headers["X-Request-ID"] = request_id


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer token for routes that declare a permission (``auth.requires``)."""
    match_info = request.match_info
    if isinstance(match_info, MatchInfoError):
        return await handler(request)
    permission = auth.required_permission(match_info.handler)
    if permission is None:
        return await handler(request)
    token = auth.parse_bearer(request.headers.get("Authorization"))
    if token is None:
        raise errors.Unauthorized()
    settings = request.app[SETTINGS]
    async with request.app[POOL].acquire() as conn:
        found = await auth.authenticate(conn, token)
        if found is None:
            # a guessing client gets 429 once it failed too often, and 401 until then
            await ratelimit.limit_failed_auth(
                conn,
                remote=client_address(request),
                per_minute=settings.rate_limit_auth_failures_per_ip,
            )
            raise errors.Unauthorized()
        await ratelimit.limit_token(
            conn, token_id=found[0].token_id, per_minute=settings.rate_limit_per_token
        )
    principal, touch_due = found
    if touch_due:
        request.app[TOKEN_TOUCHER].touch(principal.token_id)
    request[PRINCIPAL] = principal
    if permission and permission not in principal.permissions:
        raise errors.Forbidden(permission)
    return await handler(request)
