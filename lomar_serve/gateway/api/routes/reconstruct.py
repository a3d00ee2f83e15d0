"""POST /v1/reconstruct: masked-reconstruction previews (a PNG strip, or JSON with base64 PNGs)."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from lomar_serve.common.openapi import error_responses
from lomar_serve.gateway.api.deps import GatewayDep, ModelQuery, VersionQuery, requires
from lomar_serve.gateway.api.openapi import INFERENCE_ERRORS, image_request_body
from lomar_serve.gateway.api.schemas import ReconstructionImages, ReconstructResponse
from lomar_serve.gateway.api.uploads import read_images
from lomar_serve.gateway.reconstruction import Panels, strips_png

router = APIRouter(tags=["inference"], dependencies=[requires("infer")],
                   responses=error_responses(401, 403, 429))

_HEADERS = {"X-Lomar-Seed": {"description": "the seed of the mask", "schema": {"type": "integer"}},
            "X-Lomar-Model-Version": {"description": "the model version that answered", "schema": {"type": "string"}}}
RESPONSES = {200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                               "application/json": {"schema": {"$ref": "#/components/schemas/ReconstructResponse"}}},
                   "headers": _HEADERS,
                   "description": "format=png: one PNG, a strip original | masked | reconstruction | "
                                  "reconstruction with the visible patches pasted back per image, one under "
                                  "another; format=json: the same as base64 PNGs"},
             **error_responses(*INFERENCE_ERRORS)}


@router.post("/v1/reconstruct", summary="Reconstruct randomly hidden patches", responses=RESPONSES,
             response_model=None, openapi_extra=image_request_body())
async def reconstruct(
    request: Request, gateway: GatewayDep, model: ModelQuery = None, version: VersionQuery = None,
    mask_ratio: Annotated[float, Query(ge=0.0, le=1.0, description="fraction of patches hidden")] = 0.8,
    seed: Annotated[int | None, Query(ge=0, lt=2**31, description="fixes the mask; random if absent")] = None,
    format: Annotated[Literal["png", "json"], Query(description="png strip or json")] = "png",
) -> Response:
    """Images as multipart field `image` (repeat it for a batch), one raw `image/*` body, or JSON
    `{"images": [data URI or base64, ...]}`. Every image of a request gets the same mask. The seed used is
    returned in the `X-Lomar-Seed` header (and in the JSON)."""
    blobs = await read_images(request, gateway.settings)
    result = await gateway.reconstruct(blobs, model, mask_ratio, seed, version)
    headers = {"X-Lomar-Seed": str(result.seed), "X-Lomar-Model-Version": result.model_version}
    if format == "png":
        return Response(await gateway.offload(strips_png, result.panels), media_type="image/png", headers=headers)
    body = ReconstructResponse(model=result.model, model_version=result.model_version, mask_ratio=result.mask_ratio,
                               seed=result.seed, hidden_patches=result.hidden_patches,
                               results=await gateway.offload(_all_base64, result.panels))
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


def _all_base64(panels: list[Panels]) -> list[ReconstructionImages]:
    return [ReconstructionImages(**p.as_base64_pngs()) for p in panels]
