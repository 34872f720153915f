"""Webhook endpoints of an institution: register, list, read, delete, deliveries log, test ping."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from aiohttp_apigami import querystring_schema, request_schema, response_schema

from service import errors
from service.api.common import (
    json_response,
    load_query,
    paginated,
    parse_uuid,
    principal,
    read_json_object,
)
from service.api.presenters import Row
from service.api.routing import secured
from service.api.schemas import MessageSchema, PageQuerySchema
from service.api.webhook_schemas import (
    EVENT_PAYLOADS,
    WebhookAttemptPageSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookEnvelopeSchema,
    WebhookPageSchema,
    WebhookTestSchema,
    envelope,
)
from service.data import Connection
from service.data import webhooks as webhook_data
from service.jobs import wake_workers
from service.keys import POOL, SETTINGS
from service.listing import Page
from service.timestamps import api_timestamp
from service.validation import load
from service.webhooks import events, signing, ssrf

routes = web.RouteTableDef()
TAGS = ["Webhooks"]
PERMISSION = "webhooks:manage"
CREATE_SCHEMA = WebhookCreateSchema()
PAGE_QUERY = PageQuerySchema()
MAX_ENDPOINTS = 20

SIGNING = """\
Each delivery is a POST of a JSON body `{"event", "webhook_id", "timestamp", "data"}` with
`X-Webhook-Signature` (lowercase hex HMAC-SHA256 of the raw body, keyed with the secret string),
`X-Webhook-Event`, `X-Webhook-ID` (the delivery id, the same on every retry: deduplicate on it),
`X-Webhook-Timestamp`, and the Standard Webhooks headers `webhook-id`, `webhook-timestamp`,
`webhook-signature`. Any 2xx is success; anything else (redirects included) is retried with
backoff for about a day; 410 disables the endpoint, and so do about 24 hours of failures."""


def _header(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string"}
    return {
        "in": "header",
        "name": name,
        "required": True,
        "schema": schema,
        "description": description,
    }


DELIVERY_HEADERS = [
    _header("X-Webhook-Signature", "lowercase hex HMAC-SHA256 of the raw body"),
    _header("X-Webhook-Event", "the event name"),
    _header("X-Webhook-ID", "the delivery id, the same on every retry"),
    _header("X-Webhook-Timestamp", "ISO-8601 time of this attempt"),
    _header("webhook-id", "Standard Webhooks: the delivery id"),
    _header("webhook-timestamp", "Standard Webhooks: Unix seconds of this attempt"),
    _header("webhook-signature", "Standard Webhooks: v1,<base64 HMAC-SHA256>"),
]


def _callbacks() -> dict[str, Any]:
    """Each event's payload, as OpenAPI callbacks of the operation that registers endpoints."""
    return {
        event: {
            "{$request.body#/url}": {
                "post": {
                    "summary": summary,
                    "parameters": DELIVERY_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": envelope(event, data)}},
                    },
                    "responses": {"2XX": {"description": "Received"}},
                }
            }
        }
        for event, (data, summary) in EVENT_PAYLOADS.items()
    }


def present(row: Row) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret)."""
    return {
        "id": row["uuid"],
        "url": row["url"],
        "description": row["description"],
        "events": list(row["events"]),
        "active": row["active"],
        "disabled_reason": row["disabled_reason"],
        "disabled_at": row["disabled_at"],
        "failing_since": row["failing_since"],
        "last_success_at": row["last_success_at"],
        "last_failure_at": row["last_failure_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def present_attempt(row: Row) -> dict[str, Any]:
    next_retry = row["next_retry_at"]
    return {
        "delivery_id": row["delivery_uuid"],
        "event": row["event"],
        "attempt": row["attempt"],
        "status_code": row["status_code"],
        "duration_ms": row["duration_ms"],
        "error": row["error"],
        "response_excerpt": row["response_excerpt"] or "",
        "next_retry_at": api_timestamp(next_retry) if next_retry else None,
        "delivery_status": row["delivery_status"],
        "created_at": row["created_at"],
    }


async def _endpoint(request: web.Request, conn: Connection) -> asyncpg.Record:
    """The endpoint named in the path; another institution's is as missing as an unknown one."""
    raw = request.match_info["webhook_id"]
    row = await webhook_data.find_endpoint(
        conn, institution_id=principal(request).institution_id, endpoint_uuid=parse_uuid(raw)
    )
    if row is None:
        raise errors.NotFound(raw)
    return row


@routes.post("/business/webhooks")
@secured(
    PERMISSION,
    summary="Register a webhook endpoint",
    description=SIGNING,
    tags=TAGS,
    statuses=[415, 422],
    callbacks=_callbacks(),
)
@request_schema(WebhookCreateSchema, required=True)
@response_schema(WebhookCreatedSchema, 201, description="Created; the secret is shown only here")
async def create_webhook(request: web.Request) -> web.Response:
    body = load(CREATE_SCHEMA, await read_json_object(request))
    settings = request.app[SETTINGS]
    url = ssrf.validate_webhook_url(
        body["url"],
        allow_http=settings.webhooks_allow_http,
        allow_private=settings.webhooks_allow_private,
    )
    async with request.app[POOL].acquire() as conn:
        row = await webhook_data.create_endpoint(
            conn,
            institution_id=principal(request).institution_id,
            url=url,
            events=list(dict.fromkeys(body["events"])),
            description=body["description"],
            secret=signing.new_secret(),
            max_endpoints=MAX_ENDPOINTS,
        )
    if row is None:
        raise errors.Unprocessable(f"An institution can register at most {MAX_ENDPOINTS} webhooks.")
    data = {**present(row), "secret": row["secret"]}
    return json_response({"message": "Webhook endpoint created", "data": data}, status=201)


@routes.get("/business/webhooks")
@secured(PERMISSION, summary="List webhook endpoints, newest first", tags=TAGS, statuses=[422])
@querystring_schema(PageQuerySchema)
@response_schema(WebhookPageSchema, 200)
async def list_webhooks(request: web.Request) -> web.Response:
    query = load_query(request, PAGE_QUERY)
    page = Page.of(query)
    async with request.app[POOL].acquire() as conn:
        rows, total = await webhook_data.list_endpoints(
            conn,
            institution_id=principal(request).institution_id,
            limit=page.size,
            offset=page.offset,
        )
    items = [present(row) for row in rows]
    return json_response(paginated(request, items, total=total, page=page))


@routes.get("/business/webhooks/{webhook_id}")
@secured(PERMISSION, summary="A webhook endpoint and its health", tags=TAGS, statuses=[404])
@response_schema(WebhookEnvelopeSchema, 200)
async def get_webhook(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await _endpoint(request, conn)
    return json_response({"data": present(row)})


@routes.delete("/business/webhooks/{webhook_id}")
@secured(
    PERMISSION,
    summary="Delete a webhook endpoint",
    description="Its pending deliveries are dropped.",
    tags=TAGS,
    statuses=[404],
)
@response_schema(MessageSchema, 200)
async def delete_webhook(request: web.Request) -> web.Response:
    raw = request.match_info["webhook_id"]
    async with request.app[POOL].acquire() as conn:
        deleted = await webhook_data.delete_endpoint(
            conn, institution_id=principal(request).institution_id, endpoint_uuid=parse_uuid(raw)
        )
    if not deleted:
        raise errors.NotFound(raw)
    return json_response({"message": "Webhook endpoint deleted"})


@routes.get("/business/webhooks/{webhook_id}/deliveries")
@secured(
    PERMISSION,
    summary="Recent delivery attempts of an endpoint, newest first",
    tags=TAGS,
    statuses=[404, 422],
)
@querystring_schema(PageQuerySchema)
@response_schema(WebhookAttemptPageSchema, 200)
async def list_deliveries(request: web.Request) -> web.Response:
    query = load_query(request, PAGE_QUERY)
    page = Page.of(query)
    async with request.app[POOL].acquire() as conn:
        endpoint = await _endpoint(request, conn)
        rows, total = await webhook_data.list_attempts(
            conn, endpoint_id=endpoint["id"], limit=page.size, offset=page.offset
        )
    items = [present_attempt(row) for row in rows]
    return json_response(paginated(request, items, total=total, page=page))


@routes.post("/business/webhooks/{webhook_id}/test")
@secured(
    PERMISSION,
    summary="Send a ping event to the endpoint",
    description="Queued like any delivery; follow it in .../deliveries.",
    tags=TAGS,
    statuses=[404, 409],
)
@response_schema(WebhookTestSchema, 202)
async def test_webhook(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        endpoint = await _endpoint(request, conn)
        if not endpoint["active"]:
            raise errors.Conflict(
                f"The webhook endpoint is disabled: {endpoint['disabled_reason']}"
            )
        delivery_id = await events.queue_ping(
            conn, endpoint_id=endpoint["id"], endpoint_uuid=endpoint["uuid"]
        )
    wake_workers(request.app)
    data = {"delivery_id": delivery_id, "event": events.PING}
    return json_response({"message": "Test event queued", "data": data}, status=202)
