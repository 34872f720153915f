"""marshmallow loading with Laravel-style messages (``The x field is required.``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError

from service import errors

_TRANSLATIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"^Missing data for required field\.$", "The {label} field is required."),
        (r"^Field may not be null\.$", "The {label} field is required."),
        (
            r"^Longer than maximum length (\d+)\.$",
            "The {label} field must not be greater than {0} characters.",
        ),
        (
            r"^Shorter than minimum length (\d+)\.$",
            "The {label} field must be at least {0} characters.",
        ),
        (r"^Not a valid email address\.$", "The {label} field must be a valid email address."),
        (r"^Not a valid UUID\.$", "The {label} field must be a valid UUID."),
        (
            r"^Not a valid date\.$",
            "The {label} field must be a valid date in the format YYYY-MM-DD.",
        ),
        (r"^Not a valid string\.$", "The {label} field must be a string."),
        (r"^Not a valid integer\.$", "The {label} field must be an integer."),
        (r"^Not a valid boolean\.$", "The {label} field must be true or false."),
        (r"^Not a valid list\.$", "The {label} field must be an array."),
        (r"^Invalid input type\.$", "The {label} field must be an object."),
        (r"^Unknown field\.$", "The {label} field is not allowed."),
        (
            r"^Must be greater than or equal to (\d+) and less than or equal to (\d+)\.$",
            "The {label} field must be between {0} and {1}.",
        ),
        (r"^Must be greater than or equal to (\d+)\.$", "The {label} field must be at least {0}."),
        (r"^Must be one of: (.*)\.$", "The selected {label} is invalid."),
    )
)


def laravel_message(field: str, message: str) -> str:
    label = field.replace("_", " ")
    for pattern, template in _TRANSLATIONS:
        match = pattern.match(message)
        if match:
            return template.format(*match.groups(), label=label)
    return message


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as Laravel's dotted keys: ``entries.0.file_id``."""
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        field = prefix.rsplit(".", 1)[-1] or "body"
        return {prefix or "body": [laravel_message(field, m) for m in messages]}
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = "body" if key == "_schema" and not prefix else str(key)
            flat.update(flatten(value, f"{prefix}.{name}" if prefix else name))
    return flat


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise errors.FieldValidationError(flatten(exc.messages)) from None
    return result
