"""Bulk batches: list, status, and the failed entries of a batch."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apigami import querystring_schema, response_schema

from service import errors
from service.api import presenters
from service.api.common import json_response, load_query, paginated, parse_uuid, principal
from service.api.routing import secured
from service.api.schemas import PageQuerySchema
from service.api.vault_schemas import (
    BatchEnvelopeSchema,
    BatchErrorPageSchema,
    BatchPageSchema,
    BatchQuerySchema,
)
from service.data import batches as batch_data
from service.data import certificates as certificate_data
from service.keys import POOL
from service.listing import Page

routes = web.RouteTableDef()
TAGS = ["Batches"]
BATCH_QUERY = BatchQuerySchema()
PAGE_QUERY = PageQuerySchema()


@routes.get("/business/certificate-vault/batches")
@secured("batches:view", summary="List bulk batches, newest first", tags=TAGS, statuses=[422])
@querystring_schema(BatchQuerySchema)
@response_schema(BatchPageSchema, 200)
async def list_batches(request: web.Request) -> web.Response:
    query = load_query(request, BATCH_QUERY)
    page = Page.of(query)
    async with request.app[POOL].acquire() as conn:
        rows, total = await batch_data.list_batches(
            conn,
            institution_id=principal(request).institution_id,
            status=query.get("status"),
            limit=page.size,
            offset=page.offset,
        )
    items = [presenters.batch(row) for row in rows]
    return json_response(paginated(request, items, total=total, page=page))


async def _batch_status(request: web.Request) -> web.Response:
    batch_uuid = parse_uuid(request.match_info["batch_id"])
    async with request.app[POOL].acquire() as conn:
        row = await batch_data.find_batch(
            conn, institution_id=principal(request).institution_id, batch_uuid=batch_uuid
        )
    if row is None:
        raise errors.NotFound(request.match_info["batch_id"])
    return json_response({"data": presenters.batch(row)})


@routes.get("/business/certificate-vault/batches/{batch_id}")
@secured("batches:view", summary="A bulk batch's status and counts", tags=TAGS, statuses=[404])
@response_schema(BatchEnvelopeSchema, 200)
async def get_batch(request: web.Request) -> web.Response:
    return await _batch_status(request)


@routes.get("/business/batches/{batch_id}/status")
@secured("batches:view", summary="A bulk batch's status (alias)", tags=TAGS, statuses=[404])
@response_schema(BatchEnvelopeSchema, 200)
async def batch_status(request: web.Request) -> web.Response:
    return await _batch_status(request)


@routes.get("/business/certificate-vault/batches/{batch_id}/errors")
@secured(
    "batches:view",
    summary="The failed entries of a batch, with their errors",
    description="Each item names its 0-based entry_index in the bulk request and the error;"
    " fix the cause and retry the certificate (POST .../{uuid}/retry).",
    tags=TAGS,
    statuses=[404, 422],
)
@querystring_schema(PageQuerySchema)
@response_schema(BatchErrorPageSchema, 200)
async def batch_errors(request: web.Request) -> web.Response:
    query = load_query(request, PAGE_QUERY)
    page = Page.of(query)
    batch_uuid = parse_uuid(request.match_info["batch_id"])
    async with request.app[POOL].acquire() as conn:
        batch = await batch_data.find_batch(
            conn, institution_id=principal(request).institution_id, batch_uuid=batch_uuid
        )
        if batch is None:
            raise errors.NotFound(request.match_info["batch_id"])
        rows, total = await certificate_data.failed_in_batch(
            conn, batch_id=batch["id"], limit=page.size, offset=page.offset
        )
    items = [
        {
            **presenters.certificate_summary(row),
            "entry_index": row["entry_index"],
            "error": row["error"],
        }
        for row in rows
    ]
    return json_response(paginated(request, items, total=total, page=page))
