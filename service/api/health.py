"""Liveness and readiness for operators and orchestrators."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apigami import response_schema
from marshmallow import Schema, fields

from service import db, errors
from service.api.common import json_response
from service.api.routing import public
from service.keys import POOL

routes = web.RouteTableDef()


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


@routes.get("/health/live")
@public(summary="Liveness: the process is up", tags=["Health"])
@response_schema(HealthSchema, 200)
async def live(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/health/ready")
@public(summary="Readiness: database reachable and migrated", tags=["Health"], statuses=[503])
@response_schema(HealthSchema, 200)
async def ready(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire(timeout=5) as conn:
        pending = await db.pending_migrations(conn)
    if pending:
        raise errors.ServiceUnavailable(f"Database migrations pending: {pending}")
    return json_response({"status": "ok"})
