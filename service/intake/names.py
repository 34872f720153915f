"""Client file names, made safe to keep and display; stored keys never derive from them."""

from __future__ import annotations

import os
import unicodedata

MAX_NAME_CHARS = 255
MAX_EXTENSION_CHARS = 16
FALLBACK_NAME = "file"
# Bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the marks
# (LRM, RLM, ALM): they make "cert\u202efdp.exe" display as "certexe.pdf".
_BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
# Cc: NUL, C0/C1 controls, CR/LF, DEL. Cs: lone surrogates, which would not encode as UTF-8.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs"})


def sanitize_filename(raw: str | None) -> str:
    """The base name without control or bidi characters, NFC, whitespace collapsed, capped."""
    if not raw:
        return FALLBACK_NAME
    kept = "".join(ch for ch in raw if not _is_dropped(ch))
    base = unicodedata.normalize("NFC", kept).replace("\\", "/").rsplit("/", 1)[-1]
    name = " ".join(base.split())
    if not name.strip("."):
        return FALLBACK_NAME
    return _cap_length(name)


def ensure_extension(name: str, extension: str) -> str:
    """Append ``.extension`` (the sniffed type) to a name that has none, e.g. the fallback."""
    if os.path.splitext(name)[1]:
        return name
    suffix = f".{extension}"
    return name[: MAX_NAME_CHARS - len(suffix)] + suffix


def _is_dropped(ch: str) -> bool:
    return ch in _BIDI_CONTROLS or unicodedata.category(ch) in _DROPPED_CATEGORIES


def _cap_length(name: str) -> str:
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, extension = os.path.splitext(name)
    if len(extension) > MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    return stem[: MAX_NAME_CHARS - len(extension)].rstrip() + extension
