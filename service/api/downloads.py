"""Streaming a stored file to the client as an attachment."""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import quote

from aiohttp import web

from service import errors
from service.files.base import FileMissing, StorageError
from service.resources import FILES

log = logging.getLogger(__name__)


def attachment(file_name: str) -> str:
    """``Content-Disposition`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in file_name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name)}"


async def stream_file(
    request: web.Request, *, resource_id: str, key: str, content_type: str, file_name: str
) -> web.StreamResponse:
    """The stored file at ``key``; one missing from storage answers the resource's 404 (and
    is logged: the record says it exists)."""
    stream = request.app[FILES].open_stream(key)
    async with contextlib.aclosing(stream):
        try:
            first = await anext(stream, b"")
        except FileMissing:
            log.error("stored file missing: %s (of %s)", key, resource_id)
            raise errors.NotFound(resource_id) from None
        except StorageError:
            raise errors.ServiceUnavailable("The file storage is unavailable.") from None
        response = web.StreamResponse(
            headers={
                "Content-Type": content_type,
                "Content-Disposition": attachment(file_name),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
            }
        )
        await response.prepare(request)
        await response.write(first)
        async for chunk in stream:
            await response.write(chunk)
        await response.write_eof()
    return response
