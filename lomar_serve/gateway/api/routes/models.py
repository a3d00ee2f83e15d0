"""GET /v1/models: the repository's models with versions, states, kinds and model cards; GET /v1/limits: what one
request may carry."""
from __future__ import annotations

from fastapi import APIRouter

from lomar_serve.common.openapi import error_responses
from lomar_serve.gateway.api.deps import GatewayDep, requires
from lomar_serve.gateway.api.schemas import ModelsResponse, RequestLimits

router = APIRouter(tags=["models"])


@router.get("/v1/models", summary="Models, versions, state and model cards", response_model=ModelsResponse,
            response_model_exclude_unset=True, dependencies=[requires("infer")],
            responses=error_responses(401, 403, 429, 503, 504))
async def list_models(gateway: GatewayDep) -> ModelsResponse:
    return ModelsResponse.model_validate({"default_classifier": gateway.settings.default_classifier,
                                          "default_reconstructor": gateway.settings.default_reconstructor,
                                          "models": await gateway.catalog.describe_all()})


@router.get("/v1/limits", summary="What one request may carry (images, bytes, pixels, top_k); open to anyone, as "
            "the limits a client must split its requests by", response_model=RequestLimits)
async def limits(gateway: GatewayDep) -> RequestLimits:
    settings = gateway.settings
    return RequestLimits(max_images=settings.max_images, max_upload_bytes=settings.max_upload_bytes,
                         max_pixels=settings.max_pixels, max_top_k=settings.max_top_k)
