"""The rules for a certificate entry: marshmallow schemas (the documented contract) and a fast
path for valid bulk bodies.

marshmallow takes 350-650 ms to load 10,000 entries on our machine, more than the bulk
endpoint's whole budget. ``check_entries`` applies the same rules in a plain loop and hands an
entry it has a doubt about to the schema, which produces the errors, so messages always come
from one place. Tests check that both agree on valid and invalid entries.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import date
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from service.mail.compose import is_deliverable
from service.validation import flatten

TITLE_MAX = 255
NAME_MAX = 255
EMAIL_MAX = 255
DETAILS_MAX = 1000
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
EMAIL_VALIDATOR = validate.Email()
NOT_AN_EMAIL = "Not a valid email address."
# documents that a blank value counts as missing
NOT_BLANK = r"\S"


def sendable_email(value: str) -> None:
    """An email address, and one the service can send to: no non-ASCII part before the @
    (that needs SMTPUTF8 end to end), no quoted local part, a host name (no IP literal)."""
    EMAIL_VALIDATOR(value)
    if not is_deliverable(value):
        raise ValidationError(NOT_AN_EMAIL)


class Text(fields.String):
    """Trimmed text; a blank value counts as absent (Laravel trims input and nulls blanks)."""

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> Any:
        if isinstance(value, str) and not value.strip():
            # decided before the validators run: they never see a blank optional value
            if self.required:
                raise self.make_error("required")
            return None
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return str(super()._deserialize(value, attr, data, **kwargs)).strip()


class CanonicalUUID(fields.UUID):
    """Only the dashed 36-character form, as Laravel's ``uuid`` rule."""

    def _validated(self, value: Any) -> uuid.UUID | None:
        if isinstance(value, str) and not UUID_PATTERN.match(value):
            raise self.make_error("invalid_uuid")
        return super()._validated(value)


class IsoDate(fields.Date):
    """Only ``YYYY-MM-DD``."""

    def deserialize(
        self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any
    ) -> Any:
        if isinstance(value, str) and not value.strip():
            return None  # blank counts as absent, as for text
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not DATE_PATTERN.match(value):
            raise self.make_error("invalid")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None


class EntrySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # extra fields (status, institution_id, ...) are ignored, never applied

    certificate_title = Text(
        required=True,
        validate=validate.Length(max=TITLE_MAX),
        metadata={
            "description": "Title of the certificate",
            "example": "Certificate of Achievement",
            "pattern": NOT_BLANK,
        },
    )
    full_name = Text(
        required=True,
        validate=validate.Length(max=NAME_MAX),
        metadata={
            "description": "Full name of the certificate recipient",
            "example": "John Smith",
            "pattern": NOT_BLANK,
        },
    )
    applicant_email = Text(
        required=True,
        validate=[sendable_email, validate.Length(max=EMAIL_MAX)],
        metadata={
            "format": "email",
            "description": "Email address of the certificate recipient",
            "example": "john@example.com",
        },
    )
    file_id = CanonicalUUID(
        required=True,
        metadata={
            "description": "UUID returned by the /upload-file endpoint",
            "example": "9e3b101f-c264-4f97-945f-20dfa7163768",
        },
    )
    issue_date = IsoDate(
        load_default=None,
        allow_none=True,
        metadata={"description": "Issue date of the certificate", "example": "2025-06-01"},
    )
    details = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=DETAILS_MAX),
        metadata={
            "description": "Additional details about the certificate",
            "example": "Awarded for outstanding performance",
        },
    )


ENTRY_SCHEMA = EntrySchema()


def _text(value: Any, limit: int, *, required: bool) -> str | None:
    """The trimmed text, or raise LookupError when the schema must judge it."""
    if value is None and not required:
        return None
    if type(value) is not str:
        raise LookupError
    text = value.strip()
    if (not text and required) or len(text) > limit:
        raise LookupError
    return text or None


def _plain_email(value: str) -> bool:
    """The common case of the schema's rule, without marshmallow's per-call message formatting;
    anything unusual (IDN domains) is left to the schema. A sendable address has a dot-atom
    ASCII local part, which marshmallow's user pattern always accepts."""
    _, at, domain = value.rpartition("@")
    return bool(at and _plain_domain(domain) and is_deliverable(value))


@functools.lru_cache(maxsize=1024)
def _plain_domain(domain: str) -> bool:
    rule = validate.Email
    return domain in rule.DOMAIN_WHITELIST or bool(rule.DOMAIN_REGEX.match(domain))


def fast_entry(entry: Any) -> dict[str, Any]:
    """An entry loaded as the schema would, for the common case; LookupError when it needs
    the schema's judgement (it may be valid all the same)."""
    if type(entry) is not dict:
        raise LookupError
    email = _text(entry.get("applicant_email"), EMAIL_MAX, required=True)
    if not _plain_email(email or ""):
        raise LookupError
    file_id = entry.get("file_id")
    if type(file_id) is not str or not UUID_PATTERN.match(file_id):
        raise LookupError
    issue_date = entry.get("issue_date")
    if type(issue_date) is str and not issue_date.strip():
        issue_date = None
    if issue_date is not None:
        if type(issue_date) is not str or not DATE_PATTERN.match(issue_date):
            raise LookupError
        try:
            issue_date = date.fromisoformat(issue_date)
        except ValueError:
            raise LookupError from None
    return {
        "certificate_title": _text(entry.get("certificate_title"), TITLE_MAX, required=True),
        "full_name": _text(entry.get("full_name"), NAME_MAX, required=True),
        "applicant_email": email,
        "file_id": uuid.UUID(file_id),
        "issue_date": issue_date,
        "details": _text(entry.get("details"), DETAILS_MAX, required=False),
    }


def entry_problems(index: int, entry: Any) -> list[str]:
    """The schema's messages for one entry, as ``Entry N: ...`` lines."""
    if not isinstance(entry, dict):
        return [f"Entry {index}: The entry must be an object."]
    try:
        ENTRY_SCHEMA.load(entry)
    except ValidationError as exc:
        return [
            f"Entry {index}: {message}"
            for messages in flatten(exc.messages).values()
            for message in messages
        ]
    return []


def check_entries(entries: list[Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """(the valid entries with their index, the problems of the others): the fast path for
    each entry, the schema only for the entries it cannot vouch for, so one odd entry never
    costs a second pass over all."""
    valid: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        try:
            valid.append((index, fast_entry(entry)))
            continue
        except LookupError:
            pass
        found = entry_problems(index, entry)
        if found:
            problems.extend(found)
        else:
            valid.append((index, ENTRY_SCHEMA.load(entry)))
    return valid, problems
