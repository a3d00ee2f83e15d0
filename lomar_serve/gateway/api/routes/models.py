"""GET /v1/models: the repository's models with versions, states, kinds and model cards."""
from __future__ import annotations

from fastapi import APIRouter

from lomar_serve.common.openapi import error_responses
from lomar_serve.gateway.api.deps import GatewayDep, requires
from lomar_serve.gateway.api.schemas import ModelsResponse

router = APIRouter(tags=["models"], dependencies=[requires("infer")],
                   responses=error_responses(401, 403, 429))


@router.get("/v1/models", summary="Models, versions, state and model cards", response_model=ModelsResponse,
            response_model_exclude_unset=True, responses=error_responses(503, 504))
async def list_models(gateway: GatewayDep) -> ModelsResponse:
    return ModelsResponse.model_validate({"default_classifier": gateway.settings.default_classifier,
                                          "default_reconstructor": gateway.settings.default_reconstructor,
                                          "models": await gateway.catalog.describe_all()})
