"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from lomar_serve.api.deps import GatewayDep
from lomar_serve.errors import GatewayError, TritonUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Triton is up and the default models are ready",
            responses={503: {"description": "not ready; see Retry-After"}})
async def readyz(gateway: GatewayDep) -> dict[str, Any]:
    settings = gateway.settings
    if not await gateway.backend.server_ready():
        raise TritonUnavailable("Triton is not ready", retry_after_s=settings.retry_after_s)
    models = {}
    for name, kind in ((settings.default_classifier, "classifier"),
                       (settings.default_reconstructor, "reconstructor")):
        try:
            models[name] = (await gateway.catalog.get(name, kind)).version
        except GatewayError as error:
            raise TritonUnavailable(f"default model {name!r} is not ready: {error.message}",
                                    retry_after_s=settings.retry_after_s) from error
    return {"status": "ready", "models": models}


@router.get("/metrics", summary="Prometheus metrics of the gateway", response_class=Response)
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
