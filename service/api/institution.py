"""``GET /business/institution``: who am I, so an integrator can check a token."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp_apigami import response_schema
from marshmallow import Schema, fields

from service.api.common import json_response, principal
from service.api.routing import secured

routes = web.RouteTableDef()


class InstitutionSchema(Schema):
    id = fields.String(required=True, metadata={"format": "uuid"})
    name = fields.String(required=True)
    email = fields.String(required=True)
    phone_number = fields.String(required=True, allow_none=True)
    address = fields.String(required=True, allow_none=True)
    contact_person = fields.String(required=True, allow_none=True)
    website = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)


class TokenInfoSchema(Schema):
    institution = fields.Nested(InstitutionSchema, required=True)
    permissions = fields.List(fields.String(), required=True)


class TokenInfoEnvelopeSchema(Schema):
    data = fields.Nested(TokenInfoSchema, required=True)


def present_institution(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["uuid"],
        "name": row["name"],
        "email": row["email"],
        "phone_number": row["phone_number"],
        "address": row["address"],
        "contact_person": row["contact_person"],
        "website": row["website"],
        "created_at": row["created_at"],
    }


@routes.get("/business/institution")
@secured(None, summary="The institution and permissions of the calling token", tags=["Account"])
@response_schema(TokenInfoEnvelopeSchema, 200)
async def whoami(request: web.Request) -> web.Response:
    caller = principal(request)
    return json_response(
        {
            "data": {
                "institution": present_institution(caller.institution),
                "permissions": sorted(caller.permissions),
            }
        }
    )
