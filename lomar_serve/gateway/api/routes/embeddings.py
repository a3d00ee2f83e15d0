"""POST /v1/embeddings: OpenAI's embeddings API for images (the `openai` package works with base_url=.../v1).

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.embeddings.create(model="lomar_classifier", input=["data:image/jpeg;base64,..."]).data[0].embedding
"""
from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from lomar_serve.common.errors import BadRequest, UnsupportedMediaType
from lomar_serve.common.openapi import error_responses, json_request_body
from lomar_serve.gateway.api.deps import GatewayDep, requires
from lomar_serve.gateway.api.openai_schemas import EmbeddingItem, EmbeddingsRequest, EmbeddingsResponse
from lomar_serve.gateway.api.openapi import INFERENCE_ERRORS
from lomar_serve.gateway.api.uploads import JSON_TYPE, decode_base64_images, parse_json, read_body

router = APIRouter(tags=["inference"], dependencies=[requires("infer")],
                   responses=error_responses(401, 403, 429))


@router.post("/v1/embeddings", summary="OpenAI-compatible embeddings of images", response_model=EmbeddingsResponse,
             responses=error_responses(*INFERENCE_ERRORS), openapi_extra=json_request_body(EmbeddingsRequest))
async def embeddings(request: Request, gateway: GatewayDep) -> EmbeddingsResponse:
    """Unit-norm vectors, the same as POST /v1/embed's; `input` holds data URIs or plain base64 of image files
    (text is refused). The body is read with the upload byte limit before it is parsed."""
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith(JSON_TYPE):
        raise UnsupportedMediaType(f"send a JSON body (Content-Type: {JSON_TYPE}), got {content_type!r}")
    body = parse_json(EmbeddingsRequest, await read_body(request, gateway.settings.max_upload_bytes))
    blobs = decode_base64_images([body.input] if isinstance(body.input, str) else body.input,
                                 gateway.settings.max_images)
    spec = await gateway.catalog.get(body.model, "classifier")
    if body.dimensions is not None and body.dimensions != spec.embedding_dim:  # 400, as OpenAI's API
        raise BadRequest(f"dimensions: model {body.model!r} gives {spec.embedding_dim}-dimensional vectors "
                               f"and does not truncate them; omit dimensions or pass {spec.embedding_dim}")
    result = await gateway.embed(blobs, body.model, normalize=True)
    vectors = [item["embedding"] for item in result["results"]]
    data = [EmbeddingItem(index=index, embedding=_base64(vector) if body.encoding_format == "base64" else vector)
            for index, vector in enumerate(vectors)]
    return EmbeddingsResponse(data=data, model=result["model"])


def _base64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: the float32 little-endian bytes of the vector."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
