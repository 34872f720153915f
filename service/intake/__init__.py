"""Upload intake: stream a multipart part to disk under a size limit, then check what it is."""

from __future__ import annotations
