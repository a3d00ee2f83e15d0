"""Bodies of `POST /v1/embeddings`, shaped as OpenAI's embeddings API (https://platform.openai.com/docs/api-reference/embeddings).

The inputs are images (data URIs or plain base64), not text; everything else follows OpenAI, so the `openai`
package works against the gateway with `base_url="http://HOST:PORT/v1"`.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.model_repository import MODEL_NAME_PATTERN
from lomar_serve.gateway.api.schemas import EXAMPLE_IMAGE


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model": "lomar_classifier", "input": [EXAMPLE_IMAGE]}]})

    input: str | Annotated[list[str], Field(min_length=1)] = Field(description="an image, or a list of images: data URIs "
                                   "(`data:image/png;base64,...`) or plain base64; text is not accepted")
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="a classifier served by the gateway, e.g. "
                       "lomar_classifier")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, base64-encoded")
    dimensions: int | None = Field(None, ge=1, description="must equal the model's embedding size if given "
                                   "(vectors are not truncated)")
    user: str | None = Field(None, max_length=256, description="accepted and ignored (OpenAI compatibility)")


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(ge=0, description="position of the image in `input`")
    embedding: list[float] | str = Field(description="unit-norm vector, or its base64 float32 bytes")


class Usage(BaseModel):
    """Images are not tokens: both counts are 0 (the fields exist for OpenAI clients)."""

    prompt_tokens: int = Field(0, ge=0)
    total_tokens: int = Field(0, ge=0)


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage = Field(default_factory=Usage)
