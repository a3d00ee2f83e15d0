"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import functools

from fastapi import APIRouter, Response

from lomar_serve.common.errors import ServiceError
from lomar_serve.common.health import check_descriptors
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.schemas import Health
from lomar_serve.gateway.api.deps import GatewayDep
from lomar_serve.gateway.api.schemas import Readiness
from lomar_serve.gateway.errors import TritonUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive and can still open files and sockets",
            responses=error_responses(503))
async def healthz() -> Health:
    check_descriptors()
    return Health(status="ok")


@router.get("/readyz", summary="Triton is up and serves the deployed version of each default model",
            responses=error_responses(503))
async def readyz(gateway: GatewayDep) -> Readiness:
    """Asks Triton afresh (no cache) about the versions requests are routed to, so a broken version on disk or
    another model that failed to load does not make a serving gateway unready, and a restarted Triton that has
    not loaded them yet does."""
    settings = gateway.settings
    unavailable = functools.partial(TritonUnavailable, retry_after_s=settings.retry_after_s)
    if not await gateway.backend.server_live():
        raise unavailable("Triton is not reachable")
    try:
        index = await gateway.backend.repository_index()
    except ServiceError as error:
        raise unavailable(f"Triton's model repository is not readable: {error.message}") from error
    models = {}
    for name in (settings.default_classifier, settings.default_reconstructor):
        ready = [str(e.get("version")) for e in index if e.get("name") == name and e.get("state") == "READY"]
        wanted = gateway.version_for(name)
        if wanted is None and ready:
            wanted = max(ready, key=int)
        if wanted is None or wanted not in ready:
            raise unavailable(f"default model {name!r} version {wanted or '(any)'} is not loaded in Triton")
        models[name] = wanted
    return Readiness(status="ready", models=models)


@router.get("/metrics", summary="Prometheus metrics of the gateway", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
