"""``GET /metrics``: Prometheus metrics of this process (job engine, HTTP)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from service.api.routing import public

routes = web.RouteTableDef()
METRICS = web.AppKey("metrics", CollectorRegistry)


@routes.get("/metrics")
@public(summary="Prometheus metrics of this process", tags=["Health"])
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
