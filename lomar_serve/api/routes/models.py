"""GET /v1/models: the repository's models with versions, states, kinds and model cards."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lomar_serve.api.deps import GatewayDep

router = APIRouter(tags=["models"])


@router.get("/v1/models", summary="Models, versions, state and model cards")
async def list_models(gateway: GatewayDep) -> dict[str, Any]:
    return {"default_classifier": gateway.settings.default_classifier,
            "default_reconstructor": gateway.settings.default_reconstructor,
            "models": await gateway.catalog.describe_all()}
