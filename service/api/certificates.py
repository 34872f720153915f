"""Vault certificates: bulk and single intake, list, detail, retry, downloads."""

from __future__ import annotations

from aiohttp import web
from aiohttp_apigami import docs, querystring_schema, request_schema, response_schema

from service import bulk, errors, idempotency, singles
from service.api import presenters
from service.api.common import (
    json_response,
    load_query,
    paginated,
    parse_uuid,
    principal,
    read_json_object,
)
from service.api.downloads import stream_file
from service.api.routing import secured
from service.api.vault_schemas import (
    BulkAcceptedSchema,
    BulkRequestSchema,
    CertificateActionSchema,
    CertificateEnvelopeSchema,
    CertificatePageSchema,
    CertificateQuerySchema,
)
from service.data import certificates as certificate_data
from service.jobs import wake_workers
from service.keys import POOL, SECOND_CONNECTIONS, SETTINGS
from service.listing import Page, certificate_page

routes = web.RouteTableDef()
TAGS = ["Certificate Vault"]
# only UUIDs: "upload-file", "bulk" and "batches" must never look like a certificate id
UUID_RE = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
CERTIFICATE_QUERY = CertificateQuerySchema()
SEARCH_TRUNCATED_HEADER = "X-Search-Truncated"
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
    "description": "Retrying with the same key returns the first response, not a second batch"
    " (24 h, per institution).",
}


@routes.post("/business/certificate-vault/bulk")
@secured(
    "certificate-vault:create",
    summary="Create multiple vault certificates at once",
    description="Upload the files with /upload-file first, then submit entries referencing"
    " their file_id values. Processing is asynchronous; track it with the batch_id.",
    tags=TAGS,
    statuses=[409, 413, 415, 422],
    parameters=[IDEMPOTENCY_PARAMETER],
)
@request_schema(BulkRequestSchema, required=True)
@response_schema(BulkAcceptedSchema, 202, description="Bulk upload queued for processing")
async def create_bulk(request: web.Request) -> web.Response:
    with bulk.listed_errors():
        return await _create_bulk(request)


async def _create_bulk(request: web.Request) -> web.Response:
    app = request.app
    caller = principal(request)
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    body = await read_json_object(request)
    claim = None
    if key is not None:
        outcome = await idempotency.claim(
            app[POOL], institution_id=caller.institution_id, key=key, body=await request.read()
        )
        if isinstance(outcome, idempotency.Replay):
            return json_response(outcome.body, status=outcome.status)
        claim = outcome
    try:
        checked = bulk.check(body, max_entries=app[SETTINGS].max_bulk_entries)
        accepted = await bulk.submit(
            app[POOL],
            institution_id=caller.institution_id,
            checked=checked,
            per_job=app[SETTINGS].certificates_per_job,
            record_response=(
                (lambda conn, body: claim.record(conn, status=202, body=body)) if claim else None
            ),
        )
    except BaseException:
        if claim is not None:
            await claim.release(app[POOL])
        raise
    wake_workers(app)
    return json_response(accepted.body(), status=202)


@routes.get("/business/certificate-vault")
@secured(
    "certificate-vault:list",
    summary="List vault certificates, newest first",
    description="search matches the reference id, title, recipient name or email (substring,"
    " case-insensitive) and lists the newest SEARCH_WINDOW (default 1,000) matches: meta.total"
    " counts at most that many, and the X-Search-Truncated: true header says there are more"
    " (narrow the search, or filter by status, email or batch). applicant_email is an exact,"
    " case-insensitive match.",
    tags=TAGS,
    statuses=[422],
)
@querystring_schema(CertificateQuerySchema)
@response_schema(CertificatePageSchema, 200)
async def list_certificates(request: web.Request) -> web.Response:
    query = load_query(request, CERTIFICATE_QUERY)
    page = Page.of(query)
    filters = certificate_data.ListFilter(
        institution_id=principal(request).institution_id,
        search=query.get("search") or None,
        status=query.get("status"),
        applicant_email=query.get("applicant_email"),
        batch_id=query.get("batch_id"),
    )
    listed = await certificate_page(
        request.app[POOL],
        filters,
        page=page,
        window=request.app[SETTINGS].search_window,
        second_connections=request.app[SECOND_CONNECTIONS],
    )
    items = [presenters.certificate_summary(row) for row in listed.rows]
    body = paginated(request, items, total=listed.total, page=page)
    response = json_response(body)
    if listed.truncated:
        response.headers[SEARCH_TRUNCATED_HEADER] = "true"
    return response


async def find_own(request: web.Request) -> dict[str, object]:
    certificate_uuid = parse_uuid(request.match_info["uuid"])
    async with request.app[POOL].acquire() as conn:
        row = await certificate_data.find_certificate(
            conn,
            institution_id=principal(request).institution_id,
            certificate_uuid=certificate_uuid,
        )
    if row is None:
        raise errors.NotFound(request.match_info["uuid"])
    return dict(row)


@routes.get("/business/certificate-vault/{uuid:" + UUID_RE + "}")
@secured("certificate-vault:view", summary="A vault certificate", tags=TAGS, statuses=[404])
@response_schema(CertificateEnvelopeSchema, 200)
async def get_certificate(request: web.Request) -> web.Response:
    row = await find_own(request)
    return json_response(
        {"data": presenters.certificate_detail(row, request.app[SETTINGS].base_url)}
    )


@routes.post("/business/certificate-vault/{uuid:" + UUID_RE + "}/retry")
@secured(
    "certificate-vault:update",
    summary="Retry a failed vault certificate",
    tags=TAGS,
    statuses=[404, 422],
)
@response_schema(CertificateActionSchema, 200)
async def retry_certificate(request: web.Request) -> web.Response:
    certificate_uuid = parse_uuid(request.match_info["uuid"])
    await singles.retry(
        request.app[POOL],
        institution_id=principal(request).institution_id,
        certificate_uuid=certificate_uuid,
        raw_id=request.match_info["uuid"],
    )
    wake_workers(request.app)
    row = await find_own(request)
    detail = presenters.certificate_detail(row, request.app[SETTINGS].base_url)
    return json_response({"message": "Vault certificate retry initiated", "data": detail})


@routes.get("/business/certificate-vault/{uuid:" + UUID_RE + "}/download")
@secured(
    "certificate-vault:download",
    summary="Download the verified PDF",
    tags=TAGS,
    statuses=[404, 422],
)
@docs(responses={200: {"description": "The verified PDF", "content": {"application/pdf": {}}}})
async def download(request: web.Request) -> web.StreamResponse:
    row = await find_own(request)
    if row["status"] not in {"generated", "revoked"} or not row["verified_pdf_key"]:
        raise errors.Unprocessable("The verified PDF is not available yet.")
    return await stream_file(
        request,
        resource_id=request.match_info["uuid"],
        key=str(row["verified_pdf_key"]),
        content_type="application/pdf",
        file_name=f"{row['reference_id']}.pdf",
    )


@routes.get("/business/certificate-vault/{uuid:" + UUID_RE + "}/original")
@secured(
    "certificate-vault:download",
    summary="Download the original file as uploaded",
    tags=TAGS,
    statuses=[404],
)
@docs(responses={200: {"description": "The original file"}})
async def download_original(request: web.Request) -> web.StreamResponse:
    row = await find_own(request)
    return await stream_file(
        request,
        resource_id=request.match_info["uuid"],
        key=str(row["original_key"]),
        content_type=str(row["original_mime"]),
        file_name=str(row["original_name"]),
    )
