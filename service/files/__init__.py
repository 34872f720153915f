"""File storage: one small interface, a local-disk and an S3 backend, and a URL-based factory."""

from __future__ import annotations

from service.files.base import FileMissing, FileStore, StorageError
from service.files.factory import open_file_store

__all__ = ["FileMissing", "FileStore", "StorageError", "open_file_store"]
