"""marshmallow schemas of the vault routes: request bodies, queries and documented responses."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from service.api.schemas import PageQuerySchema, PaginationLinksSchema, PaginationMetaSchema
from service.entries import EntrySchema

STATUS_VALUES = ("pending", "processing", "generated", "failed", "revoked")
BATCH_STATUS_VALUES = ("processing", "completed", "partially_completed", "failed")


class BulkRequestSchema(Schema):
    entries = fields.List(
        fields.Nested(EntrySchema),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "Array of certificate entries to create"},
    )


class BulkAcceptedDataSchema(Schema):
    batch_id = fields.UUID(required=True)
    total = fields.Integer(required=True, metadata={"example": 5})
    status = fields.String(required=True, metadata={"example": "processing"})


class BulkAcceptedSchema(Schema):
    message = fields.String(
        required=True, metadata={"example": "Bulk vault upload queued for processing"}
    )
    data = fields.Nested(BulkAcceptedDataSchema, required=True)


class StatusSchema(Schema):
    value = fields.String(required=True, validate=validate.OneOf(STATUS_VALUES))
    label = fields.String(required=True)
    color = fields.String(required=True)
    icon = fields.String(required=True)
    description = fields.String(required=True)


class SourceSchema(Schema):
    value = fields.String(required=True, metadata={"example": "vault"})
    label = fields.String(required=True, metadata={"example": "Vault"})


class CertificateSummarySchema(Schema):
    id = fields.Integer(required=True)
    uuid = fields.UUID(required=True)
    reference_id = fields.String(required=True, allow_none=True)
    certificate_title = fields.String(required=True)
    full_name = fields.String(required=True)
    applicant_email = fields.String(required=True)
    source = fields.Nested(SourceSchema, required=True)
    status = fields.Nested(StatusSchema, required=True)
    issue_date = fields.Date(required=True, allow_none=True)
    created_at = fields.String(required=True, metadata={"example": "2025-06-01T10:00:00.000000Z"})
    updated_at = fields.String(required=True)


class DocumentSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(("original", "verified_pdf")))
    path = fields.String(required=True)
    file_name = fields.String(required=True)
    mime_type = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)


class CertificateDetailSchema(CertificateSummarySchema):
    details = fields.String(required=True, allow_none=True)
    qrcode_path = fields.String(required=True, allow_none=True)
    barcode_path = fields.String(required=True, allow_none=True)
    verification_url = fields.String(required=True, allow_none=True)
    applicant_phone_number = fields.String(required=True, allow_none=True)
    institution_name = fields.String(required=True)
    institution_email = fields.String(required=True)
    institution_phone_number = fields.String(required=True, allow_none=True)
    institution_address = fields.String(required=True, allow_none=True)
    institution_contact_person = fields.String(required=True, allow_none=True)
    institution_website = fields.String(required=True, allow_none=True)
    trigger_context = fields.String(
        required=True, validate=validate.OneOf(("bulk_upload", "single_upload"))
    )
    batch_id = fields.UUID(required=True, allow_none=True)
    assigned_at = fields.String(required=True, allow_none=True)
    generated_at = fields.String(required=True, allow_none=True)
    revoked_at = fields.String(required=True, allow_none=True)
    revocation_reason = fields.String(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    documents = fields.List(fields.Nested(DocumentSchema), required=True)


class CertificateEnvelopeSchema(Schema):
    data = fields.Nested(CertificateDetailSchema, required=True)


class CertificateActionSchema(Schema):
    message = fields.String(required=True)
    data = fields.Nested(CertificateDetailSchema, required=True)


class CertificatePageSchema(Schema):
    data = fields.List(fields.Nested(CertificateSummarySchema), required=True)
    links = fields.Nested(PaginationLinksSchema, required=True)
    meta = fields.Nested(PaginationMetaSchema, required=True)


class CertificateQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    search = fields.String(validate=validate.Length(max=255))
    status = fields.String(validate=validate.OneOf(STATUS_VALUES))
    applicant_email = fields.Email(validate=validate.Length(max=255))
    batch_id = fields.UUID()


class BatchSchema(Schema):
    id = fields.UUID(required=True)
    status = fields.String(required=True, validate=validate.OneOf(BATCH_STATUS_VALUES))
    total_certificates = fields.Integer(required=True)
    processed_certificates = fields.Integer(
        required=True, metadata={"description": "certificates generated"}
    )
    failed_certificates = fields.Integer(required=True)
    progress = fields.Float(required=True, metadata={"description": "0 to 100"})
    completion_date = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class BatchEnvelopeSchema(Schema):
    data = fields.Nested(BatchSchema, required=True)


class BatchPageSchema(Schema):
    data = fields.List(fields.Nested(BatchSchema), required=True)
    links = fields.Nested(PaginationLinksSchema, required=True)
    meta = fields.Nested(PaginationMetaSchema, required=True)


class BatchQuerySchema(PageQuerySchema):
    class Meta:
        unknown = EXCLUDE

    status = fields.String(validate=validate.OneOf(BATCH_STATUS_VALUES))


class BatchErrorSchema(CertificateSummarySchema):
    entry_index = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)


class BatchErrorPageSchema(Schema):
    data = fields.List(fields.Nested(BatchErrorSchema), required=True)
    links = fields.Nested(PaginationLinksSchema, required=True)
    meta = fields.Nested(PaginationMetaSchema, required=True)
