"""POST /v1/classify: top-k labels with scores for each uploaded image."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from lomar_serve.common.openapi import error_responses
from lomar_serve.gateway.api.deps import GatewayDep, ModelQuery, VersionQuery, requires
from lomar_serve.gateway.api.openapi import INFERENCE_ERRORS, image_request_body
from lomar_serve.gateway.api.schemas import MAX_TOP_K, ClassifyResponse
from lomar_serve.gateway.api.uploads import read_images

router = APIRouter(tags=["inference"], dependencies=[requires("infer")],
                   responses=error_responses(401, 403, 429))


@router.post("/v1/classify", summary="Top-k labels for each image", response_model=ClassifyResponse,
             responses=error_responses(*INFERENCE_ERRORS), openapi_extra=image_request_body())
async def classify(request: Request, gateway: GatewayDep, model: ModelQuery = None,
                   version: VersionQuery = None,
                   top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="labels per image; more than the "
                                               "model's classes returns every class")] = 5,
                   ) -> ClassifyResponse:
    """Images as multipart field `image` (repeat it for a batch), one raw `image/*` body, or JSON
    `{"images": [data URI or base64, ...]}`. One result per image in upload order; scores are softmax
    probabilities."""
    blobs = await read_images(request, gateway.settings)
    return ClassifyResponse.model_validate(await gateway.classify(blobs, model, top_k, version))
