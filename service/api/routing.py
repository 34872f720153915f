"""Route declarations: permission and documentation stated next to each handler."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiohttp_apigami import docs

from service import auth
from service.api.schemas import error_responses

Handler = TypeVar("Handler", bound=Callable[..., Any])


def secured(
    permission: str | None,
    *,
    summary: str,
    tags: list[str],
    description: str | None = None,
    statuses: Iterable[int] = (),
    **extra: Any,
) -> Callable[[Handler], Handler]:
    """A business route: bearer token required, and ``permission`` (None: any valid token)."""
    documented = docs(
        summary=summary,
        description=description,
        tags=tags,
        security=[{"bearerAuth": []}],
        # every business route is rate limited and answers 503 while the database is away
        responses=error_responses(
            *sorted({401, *([403] if permission else []), *statuses, 429, 500, 503})
        ),
        **extra,
    )
    require = auth.requires(permission)

    def wrap(handler: Handler) -> Handler:
        return require(documented(handler))

    return wrap


def public(
    *,
    summary: str,
    tags: list[str],
    description: str | None = None,
    statuses: Iterable[int] = (),
    **extra: Any,
) -> Callable[[Handler], Handler]:
    return docs(
        summary=summary,
        description=description,
        tags=tags,
        security=[],
        responses=error_responses(*statuses) if statuses else {},
        **extra,
    )
