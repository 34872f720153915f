"""Streaming a stored file to the client as an attachment."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

from aiohttp import web

from service import errors
from service.files.base import FileMissing, StorageError
from service.resources import FILES


def attachment(file_name: str) -> str:
    """``Content-Disposition`` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in file_name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name)}"


async def stream_file(
    request: web.Request, *, key: str, content_type: str, file_name: str
) -> web.StreamResponse:
    stream = request.app[FILES].open_stream(key)
    async with contextlib.aclosing(stream):
        try:
            first = await anext(stream, b"")
        except FileMissing:
            raise errors.NotFound(message="The stored file is missing.") from None
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
