"""Bodies every lomar HTTP service shares: the error format and the liveness answer (pydantic, so OpenAPI
documents them; the clients parse errors with the same models)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable error code, e.g. invalid_image")
    message: str = Field(description="what went wrong and how to fix it")


class ErrorBody(BaseModel):
    """Every error: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
