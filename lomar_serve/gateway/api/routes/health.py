"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import functools

from fastapi import APIRouter, Response

from lomar_serve.common.errors import ServiceError
from lomar_serve.common.health import check_descriptors
from lomar_serve.common.openapi import error_responses
from lomar_serve.common.schemas import Health
from lomar_serve.common.triton_index import ready_versions
from lomar_serve.gateway.api.deps import GatewayDep
from lomar_serve.gateway.api.schemas import Readiness
from lomar_serve.gateway.errors import TritonUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive and can still open files and sockets",
            responses=error_responses(503))
async def healthz() -> Health:
    check_descriptors()
    return Health(status="ok")


@router.get("/readyz", summary="Triton is up and serves the published version of every model the repository "
            "publishes and of each default model", responses=error_responses(503))
async def readyz(gateway: GatewayDep) -> Readiness:
    """Asks Triton afresh (no cache) about the versions requests are routed to: every model the repository publishes
    (routing's table, a dict read) and the default models. A model published but not loaded on this gateway's
    Triton - a Triton restarted before a job exported the model, or while its config.pbtxt was unreadable - makes
    the gateway unready, naming it; a broken version on disk that nothing publishes does not. One repository index
    call per probe, as before: it is polled."""
    settings = gateway.settings
    unavailable = functools.partial(TritonUnavailable, retry_after_s=settings.retry_after_s)
    if not await gateway.backend.server_live():
        raise unavailable("Triton is not reachable")
    try:
        index = await gateway.backend.repository_index()
    except ServiceError as error:
        raise unavailable(f"Triton's model repository is not readable: {error.message}") from error
    defaults = (settings.default_classifier, settings.default_reconstructor)
    published = gateway.published()
    models = {}
    for name in dict.fromkeys((*defaults, *sorted(published))):
        ready = ready_versions(index, name)
        wanted = published.get(name) or gateway.version_for(name)
        if wanted is None and ready:
            wanted = max(ready, key=int)
        if wanted is None or wanted not in ready:
            kind = "default model" if name in defaults else "published model"
            raise unavailable(f"{kind} {name!r} version {wanted or '(any)'} is not loaded in Triton")
        models[name] = wanted
    return Readiness(status="ready", models=models)


@router.get("/metrics", summary="Prometheus metrics of the gateway", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
