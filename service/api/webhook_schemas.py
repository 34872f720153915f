"""marshmallow schemas of the webhook routes, and of the payloads the service POSTs (callbacks)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from service.api.schemas import PaginationLinksSchema, PaginationMetaSchema
from service.webhooks import events

MAX_URL_CHARS = 2048
MAX_EVENTS = 50
TIMESTAMP = {"example": "2025-06-01T10:00:00.000000Z"}


def check_events(value: list[str]) -> None:
    if not value:
        raise ValidationError("The events field must have at least 1 items.")
    if len(value) > MAX_EVENTS:
        raise ValidationError(f"The events field must not have more than {MAX_EVENTS} items.")
    unknown = sorted({name for name in value if name not in events.EVENTS})
    if unknown:
        raise ValidationError(
            f"The events field contains unknown events: {', '.join(unknown)}."
            f" Known events: {', '.join(events.EVENTS)}."
        )


class WebhookCreateSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # secret, active, institution_id, ... are not for the caller to set

    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_URL_CHARS),
        metadata={
            "format": "uri",
            "pattern": "^https?://[^/?#\\s]+",
            "example": "https://example.org/hooks/vault",
        },
    )
    events = fields.List(
        fields.String(validate=validate.Length(max=128)),
        required=True,
        validate=check_events,
        metadata={"example": [events.CREATED, events.APPROVED]},
    )
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=1000)
    )


class WebhookSchema(Schema):
    id = fields.UUID(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    events = fields.List(fields.String(validate=validate.OneOf(events.EVENTS)), required=True)
    active = fields.Boolean(required=True, metadata={"description": "false once disabled"})
    disabled_reason = fields.String(required=True, allow_none=True)
    disabled_at = fields.String(required=True, allow_none=True)
    failing_since = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "first failed attempt since the last success"},
    )
    last_success_at = fields.String(required=True, allow_none=True)
    last_failure_at = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=TIMESTAMP)
    updated_at = fields.String(required=True, metadata=TIMESTAMP)


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(
        required=True,
        metadata={
            "description": "Signing secret, shown only in this response",
            "example": "whsec_...",
        },
    )


class WebhookCreatedSchema(Schema):
    message = fields.String(required=True, metadata={"example": "Webhook endpoint created"})
    data = fields.Nested(WebhookWithSecretSchema, required=True)


class WebhookEnvelopeSchema(Schema):
    data = fields.Nested(WebhookSchema, required=True)


class WebhookPageSchema(Schema):
    data = fields.List(fields.Nested(WebhookSchema), required=True)
    links = fields.Nested(PaginationLinksSchema, required=True)
    meta = fields.Nested(PaginationMetaSchema, required=True)


class WebhookAttemptSchema(Schema):
    delivery_id = fields.UUID(required=True, metadata={"description": "X-Webhook-ID"})
    event = fields.String(required=True)
    attempt = fields.Integer(required=True, metadata={"description": "1-based"})
    status_code = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: no HTTP response"}
    )
    duration_ms = fields.Integer(required=True)
    error = fields.String(required=True, allow_none=True)
    response_excerpt = fields.String(
        required=True, metadata={"description": "the first 200 characters of the response"}
    )
    next_retry_at = fields.String(required=True, allow_none=True)
    delivery_status = fields.String(
        required=True, validate=validate.OneOf(("pending", "delivered", "failed", "cancelled"))
    )
    created_at = fields.String(required=True, metadata=TIMESTAMP)


class WebhookAttemptPageSchema(Schema):
    data = fields.List(fields.Nested(WebhookAttemptSchema), required=True)
    links = fields.Nested(PaginationLinksSchema, required=True)
    meta = fields.Nested(PaginationMetaSchema, required=True)


class WebhookTestDataSchema(Schema):
    delivery_id = fields.UUID(required=True)
    event = fields.String(required=True, metadata={"example": events.PING})


class WebhookTestSchema(Schema):
    message = fields.String(required=True, metadata={"example": "Test event queued"})
    data = fields.Nested(WebhookTestDataSchema, required=True)


# --- the payloads POSTed to the endpoints ---


class CertificateEventDataSchema(Schema):
    application_id = fields.Integer(required=True)
    uuid = fields.UUID(required=True)
    reference_id = fields.String(required=True, allow_none=True)
    certificate_title = fields.String(required=True)
    full_name = fields.String(required=True)
    applicant_email = fields.String(required=True)
    issue_date = fields.Date(required=True, allow_none=True)
    source = fields.String(required=True, metadata={"example": "vault"})
    trigger_context = fields.String(
        required=True, validate=validate.OneOf(("bulk_upload", "single_upload"))
    )
    batch_id = fields.UUID(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata=TIMESTAMP)


class ApprovedEventDataSchema(CertificateEventDataSchema):
    verification_url = fields.String(required=True)
    download_path = fields.String(required=True, metadata={"description": "needs a token"})
    verified_pdf_sha256 = fields.String(required=True)
    generated_at = fields.String(required=True, metadata=TIMESTAMP)


class FailedEventDataSchema(CertificateEventDataSchema):
    error = fields.String(required=True)


class RevokedEventDataSchema(CertificateEventDataSchema):
    verification_url = fields.String(required=True)
    revoked_at = fields.String(required=True, metadata=TIMESTAMP)
    revocation_reason = fields.String(required=True, allow_none=True)


class BatchCompletedEventDataSchema(Schema):
    batch_id = fields.UUID(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(("completed", "partially_completed", "failed"))
    )
    total_certificates = fields.Integer(required=True)
    processed_certificates = fields.Integer(required=True)
    failed_certificates = fields.Integer(required=True)
    completion_date = fields.String(required=True, metadata=TIMESTAMP)
    created_at = fields.String(required=True, metadata=TIMESTAMP)


class PingEventDataSchema(Schema):
    message = fields.String(required=True)
    endpoint_id = fields.UUID(required=True)


def envelope(event: str, data: type[Schema]) -> type[Schema]:
    """The schema of a whole payload: common fields, and ``data`` of the event's own shape."""
    attributes: dict[str, Any] = {
        "event": fields.String(required=True, metadata={"example": event}),
        "webhook_id": fields.UUID(
            required=True, metadata={"description": "the delivery id, the same on retries"}
        ),
        "timestamp": fields.String(required=True, metadata={"example": "2025-06-01T10:00:00Z"}),
        "data": fields.Nested(data, required=True),
    }
    words = event.replace(".", "_").split("_")
    return Schema.from_dict(attributes, name="".join(w.title() for w in words) + "Event")


EVENT_PAYLOADS: dict[str, tuple[type[Schema], str]] = {
    events.CREATED: (CertificateEventDataSchema, "A certificate was created (bulk or single)"),
    events.APPROVED: (ApprovedEventDataSchema, "A certificate was generated"),
    events.FAILED: (FailedEventDataSchema, "Processing a certificate failed for good"),
    events.RETRIED: (CertificateEventDataSchema, "A failed certificate was retried"),
    events.REVOKED: (RevokedEventDataSchema, "A certificate was revoked"),
    events.BATCH_COMPLETED: (BatchCompletedEventDataSchema, "Every entry of a batch is done"),
    events.PING: (PingEventDataSchema, "Sent by POST /business/webhooks/{id}/test"),
}
