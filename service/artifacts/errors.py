"""The one error the artifact functions raise on purpose."""

from __future__ import annotations


class ArtifactError(Exception):
    """An original that cannot be turned into a verified PDF; the message is human-readable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
