"""POST /v1/embed: the model's pooled feature vector for each uploaded image."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from lomar_serve.common.openapi import error_responses
from lomar_serve.gateway.api.deps import GatewayDep, ModelQuery, VersionQuery, requires
from lomar_serve.gateway.api.openapi import INFERENCE_ERRORS, image_request_body
from lomar_serve.gateway.api.schemas import EmbedResponse
from lomar_serve.gateway.api.uploads import read_images

router = APIRouter(tags=["inference"], dependencies=[requires("infer")],
                   responses=error_responses(401, 403, 429))


@router.post("/v1/embed", summary="An embedding for each image", response_model=EmbedResponse,
             responses=error_responses(*INFERENCE_ERRORS), openapi_extra=image_request_body())
async def embed(request: Request, gateway: GatewayDep, model: ModelQuery = None,
                version: VersionQuery = None,
                normalize: Annotated[bool, Query(description="scale each vector to unit L2 norm")] = True,
                ) -> EmbedResponse:
    """Images as multipart field `image` (repeat it for a batch), one raw `image/*` body, or JSON
    `{"images": [data URI or base64, ...]}`. See also the OpenAI-compatible POST /v1/embeddings."""
    blobs = await read_images(request, gateway.settings)
    return EmbedResponse.model_validate(await gateway.embed(blobs, model, normalize, version))
