"""POST /v1/reconstruct: masked-reconstruction previews (a PNG strip, or JSON with base64 PNGs)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from lomar_serve.api.deps import GatewayDep, ModelQuery
from lomar_serve.api.uploads import read_images
from lomar_serve.reconstruction import Panels, strips_png

router = APIRouter(tags=["inference"])

PNG_RESPONSE = {200: {"content": {"image/png": {}, "application/json": {}},
                      "description": "PNG strip original | masked | reconstruction | reconstruction with the "
                                     "visible patches pasted back (one row per image), or JSON"}}


@router.post("/v1/reconstruct", summary="Reconstruct randomly hidden patches", responses=PNG_RESPONSE,
             response_model=None)
async def reconstruct(
    request: Request, gateway: GatewayDep, model: ModelQuery = None,
    mask_ratio: Annotated[float, Query(ge=0.0, le=1.0, description="fraction of patches hidden")] = 0.8,
    seed: Annotated[int | None, Query(ge=0, lt=2**31, description="fixes the mask; random if absent")] = None,
    format: Annotated[Literal["png", "json"], Query(description="png strip or json")] = "png",
) -> Response | dict[str, Any]:
    """Images as multipart field `image` (repeat for a batch) or one raw `image/*` body. Every image of a request
    gets the same mask. The seed used is returned in the `X-Lomar-Seed` header (and in the JSON)."""
    blobs = await read_images(request, gateway.settings)
    result = await gateway.reconstruct(blobs, model, mask_ratio, seed)
    headers = {"X-Lomar-Seed": str(result.seed), "X-Lomar-Model-Version": result.model_version}
    if format == "png":
        return Response(await gateway.offload(strips_png, result.panels), media_type="image/png", headers=headers)
    return {"model": result.model, "model_version": result.model_version, "mask_ratio": result.mask_ratio,
            "seed": result.seed, "hidden_patches": result.hidden_patches,
            "results": await gateway.offload(_all_base64, result.panels)}


def _all_base64(panels: list[Panels]) -> list[dict[str, str]]:
    return [p.as_base64_pngs() for p in panels]
