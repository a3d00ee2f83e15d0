"""POST /v1/classify: top-k labels with scores for each uploaded image."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from lomar_serve.api.deps import GatewayDep, ModelQuery
from lomar_serve.api.uploads import read_images

router = APIRouter(tags=["inference"])


@router.post("/v1/classify", summary="Top-k labels for each image")
async def classify(request: Request, gateway: GatewayDep, model: ModelQuery = None,
                   top_k: Annotated[int, Query(description="labels per image, 1..classes")] = 5) -> dict[str, Any]:
    """Images as multipart field `image` (repeat for a batch) or one raw `image/*` body.

    Returns `{"model", "model_version", "results": [{"labels": [{"label", "index", "score"}, ...]}, ...]}`,
    one result per image in upload order; scores are softmax probabilities.
    """
    blobs = await read_images(request, gateway.settings)
    return await gateway.classify(blobs, model, top_k)
