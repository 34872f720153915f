"""``POST /business/certificate-vault``: one certificate, its file in the same request."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apigami import docs, response_schema

from service import singles, uploads
from service.api import presenters
from service.api.certificates import TAGS
from service.api.common import json_response, principal
from service.api.forms import read_form
from service.api.routing import secured
from service.api.vault_schemas import CertificateActionSchema
from service.data import certificates as certificate_data
from service.entries import EntrySchema
from service.jobs import wake_workers
from service.keys import POOL, SETTINGS
from service.resources import FILES, INTAKE_CPU
from service.validation import load

routes = web.RouteTableDef()
FIELD = "certificate_file"
SINGLE_SCHEMA = EntrySchema(exclude=("file_id",))


def _string(description: str, max_length: int, **extra: object) -> dict[str, object]:
    return {"type": "string", "maxLength": max_length, "description": description, **extra}


SINGLE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["certificate_title", "full_name", "applicant_email", FIELD],
                "properties": {
                    "certificate_title": _string("Title of the certificate", 255, pattern=r"\S"),
                    "full_name": _string("Full name of the recipient", 255, pattern=r"\S"),
                    "applicant_email": _string("Email of the recipient", 255, format="email"),
                    # a form field is always a string: blank means no date
                    "issue_date": {
                        "type": "string",
                        "pattern": r"^(\d{4}-\d{2}-\d{2}|\s*)$",
                        "description": "YYYY-MM-DD, or blank for none",
                        "example": "2025-06-01",
                    },
                    "details": _string("Additional details", 1000),
                    FIELD: {
                        "type": "string",
                        "format": "binary",
                        "description": "PDF, JPG, JPEG or PNG, at most 20 MB",
                    },
                },
            }
        }
    },
}


@routes.post("/business/certificate-vault")
@secured(
    "certificate-vault:create",
    summary="Create one vault certificate (file in the same request)",
    tags=TAGS,
    statuses=[413, 422, 503],
)
@docs(requestBody=SINGLE_BODY)
@response_schema(CertificateActionSchema, 201, description="Vault certificate created")
async def create_single(request: web.Request) -> web.Response:
    app, caller = request.app, principal(request)
    settings = app[SETTINGS]
    form = await read_form(
        request,
        file_field=FIELD,
        spool_dir=settings.spool_dir,
        limit=settings.max_upload_bytes,
        fields_schema=SINGLE_SCHEMA,
    )
    assert form.file is not None  # read_form guarantees a file
    try:
        entry = load(SINGLE_SCHEMA, form.fields)
        stored = await uploads.accept_upload(
            pool=app[POOL],
            files=app[FILES],
            cpu=app[INTAKE_CPU],
            settings=settings,
            institution_id=caller.institution_id,
            spooled=form.file,
            field=FIELD,
        )
    finally:
        form.discard()
    created = await singles.create_single(
        app[POOL], institution_id=caller.institution_id, entry=entry, upload_id=stored.file_uuid
    )
    wake_workers(app)
    async with app[POOL].acquire() as conn:
        row = await certificate_data.find_certificate(
            conn, institution_id=caller.institution_id, certificate_uuid=created
        )
    assert row is not None  # just created, same institution
    detail = presenters.certificate_detail(row, settings.base_url)
    return json_response(
        {"message": "Vault certificate created successfully", "data": detail}, status=201
    )
