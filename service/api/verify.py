"""Public routes: the verification page, its JSON twin, and the certificates' public SVG files.

Rate limited per client address (``ratelimit.limit_public``) inside each handler, on the same
pooled connection as the lookup: asyncpg runs a reset query on every release, so a separate
middleware acquire would cost a round trip more per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp_apigami import docs, response_schema
from marshmallow import Schema, fields, validate

from service import errors, ratelimit, verification, verification_page
from service.api.common import client_address, json_response
from service.api.routing import public
from service.data import Connection
from service.files.base import FileMissing
from service.keys import POOL, SETTINGS
from service.resources import FILES
from service.verification import BARCODE, QR_CODE, PublicCertificate

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

STYLESHEET_PATH = "/public/assets/verify.css"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:;"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # a revocation must show at once
    "Cache-Control": "no-store",
}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# An SVG opened directly is a document: no script may run in it.
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=86400",
}
STYLESHEET_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "public, max-age=31536000, immutable",
}
TAGS = ["Verification"]
REFERENCE_EXAMPLE = "VEC-IC-20250A1B2C3D4E5F6"


class PublicCertificateSchema(Schema):
    reference_id = fields.String(required=True, metadata={"example": REFERENCE_EXAMPLE})
    status = fields.String(
        required=True, validate=validate.OneOf(["valid", "revoked"]), metadata={"example": "valid"}
    )
    certificate_title = fields.String(required=True, metadata={"example": "Bachelor of Science"})
    full_name = fields.String(required=True, metadata={"example": "Ada Lovelace"})
    institution_name = fields.String(required=True, metadata={"example": "Alpha University"})
    issue_date = fields.Date(required=True, allow_none=True)
    issued_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "When the vault generated it"}
    )
    revoked_at = fields.DateTime(required=True, allow_none=True)
    revocation_reason = fields.String(required=True, allow_none=True)


class VerificationSchema(Schema):
    data = fields.Nested(PublicCertificateSchema, required=True)


def _content(media_type: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string"}}},
    }


PAGE_RESPONSES = {
    200: _content("text/html", "The page for a valid or revoked certificate"),
    404: _content("text/html", "The page for an unknown reference id"),
}
SVG_RESPONSES = {200: _content("image/svg+xml", "The SVG image")}


@asynccontextmanager
async def limited_connection(request: web.Request) -> AsyncIterator[Connection]:
    """A pooled connection, once this request is counted against its address's public limit."""
    app = request.app
    async with app[POOL].acquire() as conn:
        await ratelimit.limit_public(
            conn, remote=client_address(request), per_minute=app[SETTINGS].rate_limit_public_per_ip
        )
        yield conn


async def _look_up(request: web.Request) -> tuple[str, PublicCertificate | None]:
    reference_id = request.match_info["reference_id"]
    async with limited_connection(request) as conn:
        return reference_id, await verification.look_up(conn, reference_id)


def public_json(certificate: PublicCertificate) -> dict[str, Any]:
    return {
        "reference_id": certificate.reference_id,
        "status": certificate.verdict.value,
        "certificate_title": certificate.certificate_title,
        "full_name": certificate.full_name,
        "institution_name": certificate.institution_name,
        "issue_date": certificate.issue_date,
        "issued_at": certificate.issued_at,
        "revoked_at": certificate.revoked_at,
        "revocation_reason": certificate.revocation_reason,
    }


@routes.get("/verify/{reference_id}")
@public(
    summary="Verification page (HTML) for a certificate's QR code",
    description="Valid or revoked (200), or unknown (404: no such id, or not generated). No"
    " login. Rate limited per client address.",
    tags=TAGS,
    statuses=[429, 503],
)
@docs(responses=PAGE_RESPONSES)
async def verify_page(request: web.Request) -> web.Response:
    reference_id, certificate = await _look_up(request)
    has_qr = certificate is not None and certificate.has_qr_code
    page = verification_page.render(
        reference_id=reference_id,
        certificate=certificate,
        checked_at=datetime.now(UTC),
        stylesheet_url=f"{STYLESHEET_PATH}?v={verification_page.STYLESHEET_VERSION}",
        qr_url=verification.public_artifact_url("", reference_id, QR_CODE) if has_qr else None,
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        status=200 if certificate else 404,
        headers=PAGE_HEADERS,
    )


@routes.get("/api/verify/{reference_id}")
@public(
    summary="Verify a certificate (JSON)",
    description="The verification page's content: status valid or revoked; 404 when unknown."
    " No login. Rate limited per client address.",
    tags=TAGS,
    statuses=[404, 429, 503],
)
@response_schema(VerificationSchema, 200, description="A valid or revoked certificate")
async def verify_json(request: web.Request) -> web.Response:
    reference_id, certificate = await _look_up(request)
    if certificate is None:
        # answered here rather than raised, to carry no-store like every other answer
        unknown = errors.NotFound(reference_id)
        return json_response(unknown.body(), status=unknown.status, headers=JSON_HEADERS)
    return json_response({"data": public_json(certificate)}, headers=JSON_HEADERS)


async def _artifact(request: web.Request, name: str) -> web.Response:
    reference_id = request.match_info["reference_id"]
    async with limited_connection(request) as conn:
        found = await verification.public_artifact(conn, reference_id, name)
    if found is None:
        raise errors.NotFound(reference_id)
    try:
        data = await request.app[FILES].get_bytes(found) if isinstance(found, str) else found
    except FileMissing:
        log.warning("public artifact missing from storage: %s %s", reference_id, name)
        raise errors.NotFound(reference_id) from None
    return web.Response(body=data, content_type="image/svg+xml", headers=SVG_HEADERS)


@routes.get("/public/certificates/{reference_id}/qr_code.svg")
@public(
    summary="QR code of a certificate (SVG)",
    description="Encodes the verification page's URL. Generated or revoked certificates only.",
    tags=TAGS,
    statuses=[404, 429, 503],
)
@docs(responses=SVG_RESPONSES)
async def qr_code(request: web.Request) -> web.Response:
    return await _artifact(request, QR_CODE)


@routes.get("/public/certificates/{reference_id}/barcode.svg")
@public(
    summary="Code 128 barcode of a certificate's reference id (SVG)",
    description="Generated or revoked certificates only.",
    tags=TAGS,
    statuses=[404, 429, 503],
)
@docs(responses=SVG_RESPONSES)
async def barcode(request: web.Request) -> web.Response:
    return await _artifact(request, BARCODE)


# Not rate limited: a constant served from memory (a counter would cost more than the answer),
# and cached by browsers for good since its URL changes with its content.
@routes.get(STYLESHEET_PATH)
async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(
        body=verification_page.STYLESHEET,
        content_type="text/css",
        charset="utf-8",
        headers=STYLESHEET_HEADERS,
    )
