"""POST /v1/embed: the model's pooled feature vector for each uploaded image."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lomar_serve.api.deps import GatewayDep, ModelQuery
from lomar_serve.api.uploads import read_images

router = APIRouter(tags=["inference"])


@router.post("/v1/embed", summary="An embedding for each image")
async def embed(request: Request, gateway: GatewayDep, model: ModelQuery = None,
                normalize: Annotated[bool, Query(description="scale each vector to unit L2 norm")] = True,
                ) -> dict[str, Any]:
    """Images as multipart field `image` (repeat for a batch) or one raw `image/*` body.

    Returns `{"model", "model_version", "dim", "normalized", "results": [{"embedding": [...]}, ...]}`.
    """
    blobs = await read_images(request, gateway.settings)
    return await gateway.embed(blobs, model, normalize)
