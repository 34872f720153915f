"""Streaming ``multipart/form-data``: text fields and one file, with every limit enforced."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from marshmallow import Schema

from service import errors
from service.intake.spool import SpooledFile, spool_part
from service.validation import load

MAX_PARTS = 32
MAX_TEXT_FIELD_BYTES = 64 * 1024


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    file: SpooledFile | None = None

    def discard(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.path.unlink()
            self.file = None


def _missing(file_field: str) -> errors.FieldValidationError:
    label = file_field.replace("_", " ")
    return errors.FieldValidationError.single(file_field, f"The {label} field is required.")


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        data += chunk
        if len(data) > MAX_TEXT_FIELD_BYTES:
            raise errors.FieldValidationError.single(part.name or "body", "The field is too long.")
    try:
        text = data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise errors.FieldValidationError.single(
            part.name or "body", "The field must be valid UTF-8 text."
        ) from None
    if "\x00" in text:
        raise errors.FieldValidationError.single(
            part.name or "body", "The field must not contain NUL characters."
        )
    return text


async def _drain(part: BodyPartReader, limit_bytes: int) -> None:
    """Read and drop a part nobody asked for, without letting it run unbounded."""
    read = 0
    while chunk := await part.read_chunk(65536):
        read += len(chunk)
        if read > limit_bytes:
            raise errors.PayloadTooLarge()


async def _next_part(reader: object) -> BodyPartReader | None:
    part = await reader.next()  # type: ignore[attr-defined]
    if part is not None and not isinstance(part, BodyPartReader):
        raise errors.FieldValidationError.single(
            "body", "Nested multipart bodies are not supported."
        )
    return part


async def _fill(
    form: Form, reader: object, *, file_field: str, spool_dir: Path, limit: int
) -> None:
    for _ in range(MAX_PARTS):
        part = await _next_part(reader)
        if part is None:
            return
        if part.name == file_field:
            if form.file is not None:
                raise errors.FieldValidationError.single(
                    file_field, "Only one file may be uploaded per request."
                )
            if part.filename is None:
                raise errors.FieldValidationError.single(
                    file_field, f"The {file_field.replace('_', ' ')} field must be a file."
                )
            form.file = await spool_part(
                part, directory=spool_dir, limit_bytes=limit, field=file_field
            )
        elif part.filename is not None or not part.name:
            await _drain(part, limit)
        else:
            form.fields[part.name] = await _read_text(part)
    raise errors.FieldValidationError.single("body", f"At most {MAX_PARTS} form parts are allowed.")


async def read_form(
    request: web.Request,
    *,
    file_field: str,
    spool_dir: Path,
    limit: int,
    fields_schema: Schema | None = None,
) -> Form:
    """Parse the form; the caller owns ``form.file`` and must ``discard()`` it when done.

    Anything that is not a well-formed multipart body simply has no file: a 422 on the field.
    Without a file, the other fields' problems (``fields_schema``) are reported with it.
    """
    try:
        reader = await request.multipart()
    except (KeyError, ValueError, AssertionError, LookupError):
        raise _missing(file_field) from None
    form = Form()
    try:
        await _fill(form, reader, file_field=file_field, spool_dir=spool_dir, limit=limit)
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        form.discard()
        raise errors.FieldValidationError.single(
            "body", "The multipart body is malformed."
        ) from exc
    except BaseException:
        form.discard()
        raise
    if form.file is None:
        raise _with_field_problems(_missing(file_field), form.fields, fields_schema)
    return form


def _with_field_problems(
    missing: errors.FieldValidationError, fields: dict[str, str], schema: Schema | None
) -> errors.FieldValidationError:
    if schema is None:
        return missing
    try:
        load(schema, fields)
    except errors.FieldValidationError as invalid:
        return errors.FieldValidationError({**invalid.errors, **missing.errors})
    return missing
