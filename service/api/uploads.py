"""``POST /business/certificate-vault/upload-file``: a temporary file for bulk entries."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apigami import docs, response_schema
from marshmallow import Schema, fields

from service import uploads
from service.api.common import json_response, principal
from service.api.forms import read_form
from service.api.routing import secured
from service.keys import POOL, SETTINGS
from service.resources import FILES, INTAKE_CPU

routes = web.RouteTableDef()

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "PDF, JPG, JPEG or PNG, at most 20 MB",
                    }
                },
            }
        }
    },
}


class UploadedFileSchema(Schema):
    file_id = fields.UUID(required=True)
    file_name = fields.String(required=True, metadata={"example": "certificate.pdf"})
    mime_type = fields.String(required=True, metadata={"example": "application/pdf"})
    size = fields.Integer(required=True, metadata={"example": 245760})


class UploadResponseSchema(Schema):
    message = fields.String(required=True, metadata={"example": "File uploaded successfully"})
    data = fields.Nested(UploadedFileSchema, required=True)


@routes.post("/business/certificate-vault/upload-file")
@secured(
    "certificate-vault:create",
    summary="Upload a certificate file for bulk entries",
    description="Stores the file in temporary storage and returns a file_id, usable once by"
    " one bulk entry of the same institution before it expires (24 h by default). The type"
    " is decided by the file's bytes.",
    tags=["Certificate Vault"],
    statuses=[413, 422, 503],
)
@docs(requestBody=UPLOAD_BODY)
@response_schema(UploadResponseSchema, 201, description="File uploaded successfully")
async def upload_file(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    form = await read_form(
        request, file_field="file", spool_dir=settings.spool_dir, limit=settings.max_upload_bytes
    )
    assert form.file is not None  # read_form guarantees a file
    try:
        stored = await uploads.accept_upload(
            pool=app[POOL],
            files=app[FILES],
            cpu=app[INTAKE_CPU],
            settings=settings,
            institution_id=principal(request).institution_id,
            spooled=form.file,
            field="file",
        )
    finally:
        form.discard()
    data = {
        "file_id": stored.file_id,
        "file_name": stored.file_name,
        "mime_type": stored.mime_type,
        "size": stored.size,
    }
    return json_response({"message": "File uploaded successfully", "data": data}, status=201)
