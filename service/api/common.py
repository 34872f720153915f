"""Helpers shared by the handlers: JSON in and out, the caller, pagination."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from aiohttp import web
from marshmallow import Schema
from yarl import URL

from service import errors
from service.auth import Principal
from service.config import Network
from service.keys import SETTINGS
from service.listing import Page
from service.ratelimit import Address, unmapped
from service.timestamps import api_timestamp
from service.validation import load

PRINCIPAL = web.RequestKey("principal", Principal)
LARGE_PARSE = web.AppKey("large_parse", asyncio.Semaphore)
LARGE_BODY_BYTES = 256 * 1024
REQUEST_ID = web.RequestKey("request_id", str)


def _default(value: object) -> Any:
    if isinstance(value, datetime):
        return api_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def dumps(data: object) -> str:
    return json.dumps(data, default=_default, ensure_ascii=False, separators=(",", ":"))


def json_response(
    data: object, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def client_address(request: web.Request) -> str | None:
    """The peer's address; behind a trusted proxy (TRUSTED_PROXIES), the address nearest to
    us in X-Forwarded-For that is not a trusted proxy (what is left of it, a client can forge).
    A hop that is no address (``unknown``) ends the walk: it is what is counted."""
    proxies = request.app[SETTINGS].trusted_proxies
    peer = _address(request.remote)
    if peer is None or not _is_trusted(peer, proxies):
        return request.remote
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return hop  # not an address (a proxy's "unknown"): nothing left of it is trusted
        if not _is_trusted(address, proxies):
            return str(address)
    return str(_address(hops[0])) if hops else str(peer)  # all trusted: the first one


def _address(text: str | None) -> Address | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or ``[2001:db8::1]:443``;
    an IPv4-mapped IPv6 address as its IPv4 address."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


# Escapes that only JSON text can carry: NUL (PostgreSQL text cannot hold it) and UTF-16
# surrogates (legal in pairs, but a lone one cannot be encoded as UTF-8 again).
# an odd run of backslashes before u0000 is the escape; an even one is escaped backslashes
NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _invalid_body(message: str) -> errors.FieldValidationError:
    return errors.FieldValidationError.single("body", message)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body, or a 4xx in the contract's shape."""
    if request.content_type != "application/json":
        raise errors.UnsupportedMediaType(
            "The request body must be JSON (Content-Type: application/json)."
        )
    raw = await request.read()
    # the literal test first: the regex alone takes ~90 ms over a 10,000-entry body
    if b"\x00" in raw or (b"\\u0000" in raw and NUL_ESCAPE.search(raw)):
        raise _invalid_body("The request body must not contain NUL characters.")
    if len(raw) < LARGE_BODY_BYTES:
        return parse_json(raw, request.charset)
    # A big body parses in a thread, one at a time per process: the event loop stays free and
    # at most one large parse holds its memory at once.
    async with request.app[LARGE_PARSE]:
        return await asyncio.to_thread(parse_json, raw, request.charset)


def parse_json(raw: bytes, charset: str | None) -> Any:
    try:
        body = json.loads(raw.decode(charset or "utf-8"))
        if SURROGATE_ESCAPE.search(raw):
            json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _invalid_body("The request body contains an invalid Unicode escape.") from None
    except (UnicodeDecodeError, LookupError, ValueError, RecursionError):
        raise _invalid_body("The request body is not valid JSON.") from None
    return body


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.FieldValidationError.single("body", "The request body must be a JSON object.")
    return body


def parse_uuid(raw: str) -> uuid.UUID:
    """A path id; anything that is not a UUID is simply not found."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.NotFound(raw) from None


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    query: dict[str, str] = {}
    for name, value in request.query.items():
        query.setdefault(name, value)  # a repeated parameter: its first value
    for name, value in query.items():
        if "\x00" in value:
            raise errors.FieldValidationError.single(
                name, f"The {name.replace('_', ' ')} field must not contain NUL characters."
            )
    return load(schema, query)


def paginated(
    request: web.Request, items: Sequence[object], *, total: int, page: Page
) -> dict[str, Any]:
    """Laravel's length-aware paginator: data, links and meta."""
    per_page = page.size
    last_page = max(1, math.ceil(total / per_page))
    # links name the public address (PUBLIC_BASE_URL), not whatever reached the process
    public = URL(request.app[SETTINGS].base_url)
    own = (
        public.join(request.rel_url)
        if public.path in {"", "/"}
        else public / request.path.lstrip("/")
    )
    own = own.with_query(request.query)
    path = str(own.with_query(None))

    def page_url(number: int) -> str:
        return str(own.update_query(page=number))

    number = page.number
    first = page.offset + 1 if items else None
    return {
        "data": list(items),
        "links": {
            "first": page_url(1),
            "last": page_url(last_page),
            "prev": page_url(number - 1) if number > 1 else None,
            "next": page_url(number + 1) if number < last_page else None,
        },
        "meta": {
            "current_page": number,
            "from": first,
            "last_page": last_page,
            "path": path,
            "per_page": per_page,
            "to": first + len(items) - 1 if first is not None else None,
            "total": total,
        },
    }
