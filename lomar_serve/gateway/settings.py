"""Gateway settings: one validated pydantic-settings object, read from `LOMAR_*` environment variables.

Command-line flags of `lomar serve` override the environment; the result is validated once at start-up,
logged with secrets masked, and never mutated afterwards.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.model_repository import DEFAULT_CLASSIFIER, DEFAULT_RECONSTRUCTOR, MODEL_NAME_PATTERN
from contracts.preprocessing import MAX_PIXELS, MIN_SIDE
from lomar_serve.common.settings import DEFAULT_MODEL_REPOSITORY, describe, log_level, triton_address

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


class Settings(BaseSettings):
    """Everything the gateway and the Triton launcher need; immutable after construction."""

    model_config = SettingsConfigDict(env_prefix="LOMAR_", frozen=True, extra="ignore")

    # Public HTTP surface (the gateway); Triton itself always binds to 127.0.0.1 when we launch it.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Triton model repository: launched Triton serves it; labels and model cards are read from it.
    model_repository: Path = DEFAULT_MODEL_REPOSITORY
    # An existing Triton (e.g. NVIDIA's container), "host:port" of its HTTP endpoint; None = launch our own.
    triton_url: str | None = None
    default_classifier: ModelName = DEFAULT_CLASSIFIER
    default_reconstructor: ModelName = DEFAULT_RECONSTRUCTOR
    # Input limits (a bad upload is a 4xx, never a crash or an out-of-memory).
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)  # whole request body
    max_pixels: int = Field(MAX_PIXELS, gt=0)  # width * height of one decoded image (decompression bombs)
    max_images: int = Field(32, ge=1)  # images per request
    min_image_side: int = Field(MIN_SIDE, ge=1)  # smaller images carry no usable content
    max_top_k: int = Field(100, ge=1)  # labels per image at most (a larger top_k is capped, never refused)
    # Reading requests: a connection must deliver a request's headers, and then its whole body, within these.
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(60.0, gt=0)
    # Triton calls.
    request_timeout_s: float = Field(30.0, gt=0)  # one inference round trip
    retry_after_s: int = Field(2, ge=1)  # Retry-After sent with 503 while Triton is down
    decode_threads: int = Field(4, ge=1)  # image decoding off the event loop
    # Pixels decoded at once over all requests (~4 bytes each; images with alpha count twice), read from the
    # headers before decoding; an image that can never fit is a 413 (lomar_serve/gateway/decode_budget.py).
    decode_budget_pixels: int = Field(96_000_000, ge=1)
    # Launching Triton (no --triton-url).
    triton_start_timeout_s: float = Field(120.0, gt=0)
    triton_max_restarts: int = Field(1000, ge=0)  # supervisor gives up after this many restarts in a row
    # Routing (lomar_serve/gateway/routing.py): how often the serving versions published in the repository are re-read.
    routing_interval_s: float = Field(0.5, gt=0)
    # Similar-image search (lomar_serve/search): where collections live (None: next to the repository), the
    # engine (embedded usearch files, or PostgreSQL+pgvector at search_pg_url), images per re-index inference
    # call, and how long this gateway holds the old version after a switch for the collections' re-index.
    search_dir: Path | None = None
    search_engine: Literal["embedded", "pgvector"] = "embedded"
    search_pg_url: SecretStr | None = None
    search_pg_build_memory_mb: int = Field(1024, ge=64)  # maintenance_work_mem of a pgvector HNSW build
    search_reindex_batch: int = Field(16, ge=1)
    search_check_interval_s: float = Field(5.0, gt=0)
    search_hold_s: float = Field(600.0, ge=0)
    log_level: str = "info"

    @field_validator("triton_url")
    @classmethod
    def _strip_scheme(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else triton_address(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return log_level(value)

    @model_validator(mode="after")
    def _pgvector_needs_url(self) -> Settings:
        if self.search_engine == "pgvector" and self.search_pg_url is None:
            raise ValueError("search_engine pgvector needs search_pg_url (LOMAR_SEARCH_PG_URL, postgresql://...)")
        return self

    @model_validator(mode="after")
    def _repository_needed_to_launch(self) -> Settings:
        if self.triton_url is None and not self.model_repository.is_dir():
            raise ValueError(f"model repository {self.model_repository} is not a directory "
                             "(give --model-repository, or --triton-url for an existing server)")
        return self

    def describe(self) -> str:
        return describe(self)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (for `uvicorn lomar_serve.gateway.app:create_app --factory`)."""
    return Settings()
