"""marshmallow schemas shared by the routes: the documented error bodies and envelopes."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, fields, validate


class MessageSchema(Schema):
    message = fields.String(required=True)


class UnauthorizedSchema(Schema):
    message = fields.String(required=True, metadata={"example": "Unauthorized - Invalid API token"})


class ForbiddenSchema(Schema):
    message = fields.String(
        required=True, metadata={"example": "Forbidden - Insufficient permissions"}
    )
    required_permission = fields.String(required=True, metadata={"example": "batches:view"})


class NotFoundSchema(Schema):
    message = fields.String(required=True)
    error = fields.String(required=True, metadata={"example": "resource_not_found"})


class ServerErrorSchema(Schema):
    message = fields.String(required=True)
    error_code = fields.String(required=True, metadata={"example": "SERVER_ERROR"})


class UnavailableSchema(Schema):
    message = fields.String(required=True)
    error_code = fields.String(required=True, metadata={"example": "SERVICE_UNAVAILABLE"})


class PaginationLinksSchema(Schema):
    first = fields.String(required=True)
    last = fields.String(required=True)
    prev = fields.String(required=True, allow_none=True)
    next = fields.String(required=True, allow_none=True)


class PaginationMetaSchema(Schema):
    current_page = fields.Integer(required=True)
    from_ = fields.Integer(required=True, allow_none=True, data_key="from")
    last_page = fields.Integer(required=True)
    path = fields.String(required=True)
    per_page = fields.Integer(required=True)
    to = fields.Integer(required=True, allow_none=True)
    total = fields.Integer(required=True)


class PageQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE  # a parameter the route does not know is ignored, as by Laravel

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000_000))
    per_page = fields.Integer(load_default=15, validate=validate.Range(min=1, max=100))


UNPROCESSABLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "errors": {
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                {"type": "array", "items": {"type": "string"}},
            ]
        },
    },
    "example": {
        "message": "Some file_ids could not be resolved",
        "errors": ["Entry 0: file_id 9e3b101f-c264-4f97-945f-20dfa7163768 not found"],
    },
}


def error_responses(*statuses: int) -> dict[int, dict[str, Any]]:
    """The documented error responses of an operation, by status."""
    catalogue: dict[int, dict[str, Any]] = {
        401: {"description": "Authentication failed", "schema": UnauthorizedSchema},
        403: {"description": "Permission denied", "schema": ForbiddenSchema},
        404: {"description": "Not found", "schema": NotFoundSchema},
        409: {"description": "Conflict", "schema": MessageSchema},
        413: {"description": "Request too large", "schema": MessageSchema},
        415: {"description": "Unsupported content type", "schema": MessageSchema},
        422: {
            "description": "Validation error: `errors` maps fields to messages; on the bulk"
            " endpoint it always lists lines (`Entry N: ...`, or one line for a problem with"
            " the request as a whole); elsewhere, a problem with the request as a whole has"
            " only `message`",
            "content": {"application/json": {"schema": UNPROCESSABLE_SCHEMA}},
        },
        429: {
            "description": "Too many requests; `Retry-After` says when to try again",
            "schema": MessageSchema,
        },
        500: {"description": "Server error", "schema": ServerErrorSchema},
        503: {"description": "Temporarily unavailable", "schema": UnavailableSchema},
    }
    return {status: catalogue[status] for status in statuses}
