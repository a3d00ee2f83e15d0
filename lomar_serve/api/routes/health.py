"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Response

from lomar_serve.api.deps import GatewayDep
from lomar_serve.api.openapi import error_responses
from lomar_serve.api.schemas import Health, Readiness
from lomar_serve.errors import GatewayError, TritonUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Triton is up and the default models are ready",
            responses=error_responses(503))
async def readyz(gateway: GatewayDep) -> Readiness:
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
    return Readiness(status="ready", models=models)


@router.get("/metrics", summary="Prometheus metrics of the gateway", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)
