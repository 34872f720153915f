"""How the service writes a time: always UTC, with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def api_timestamp(value: datetime) -> str:
    """The API's (and webhook data's): with microseconds, e.g. ``2026-06-04T10:30:00.000000Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def second_timestamp(value: datetime) -> str:
    """A webhook's ``timestamp`` and ``X-Webhook-Timestamp``: to the second,
    e.g. ``2026-06-04T10:30:00Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
