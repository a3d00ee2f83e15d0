"""Gateway settings: one validated pydantic-settings object, read from `LOMAR_*` environment variables.

Command-line flags of `lomar gateway` and `lomar serve` override the environment; the result is validated once at
start-up, logged with secrets masked, and never mutated afterwards. Every variable: docs/settings.md.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from contracts.model_repository import DEFAULT_CLASSIFIER, DEFAULT_RECONSTRUCTOR, MODEL_NAME_PATTERN
from contracts.preprocessing import MAX_PIXELS, MIN_SIDE
from lomar_serve.common.api_keys import SCOPES, Scope
from lomar_serve.common.settings import (DEFAULT_GATEWAY_PORT, DEFAULT_MODEL_REPOSITORY, ModelRepository, RoleSettings,
                                         triton_address)
from lomar_serve.search.engine import DEFAULT_EF_SEARCH, DEFAULT_EXACT_LIMIT, DEFAULT_POOL_SIZE

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]


class Settings(RoleSettings):
    """Everything the gateway needs; immutable after construction."""

    # Public HTTP surface.
    host: str = Field("127.0.0.1", description="address the gateway listens on")
    port: int = Field(DEFAULT_GATEWAY_PORT, ge=0, le=65535, description="the gateway's port")
    model_repository: ModelRepository = DEFAULT_MODEL_REPOSITORY
    triton_url: str | None = Field(None, description="host:port of Triton's HTTP endpoint (unset with `lomar "
                                                     "serve`: it launches and supervises its own)")
    default_classifier: ModelName = Field(DEFAULT_CLASSIFIER, description="the model of requests that name none "
                                                                          "(classify, embed)")
    default_reconstructor: ModelName = Field(DEFAULT_RECONSTRUCTOR, description="the model of reconstruction "
                                                                                "requests that name none")
    # Access: API keys published by the control plane (gateway/access.py, docs/security.md).
    open_scopes: Annotated[tuple[Scope, ...], NoDecode] = Field(("infer", "collections:read"), description=(
        f"what anyone may do without an API key, comma-separated of {', '.join(SCOPES)} (empty: every request "
        "needs a key); collection writes need a key unless listed here"))
    api_keys_file: Path | None = Field(None, description="the API keys the control plane publishes (unset: "
                                                         "REPOSITORY/.api_keys.json)")
    api_keys_reload_s: float = Field(1.0, gt=0, description="seconds between checks of the API keys file (a key "
                                                            "created or revoked takes effect within this)")
    anonymous_rate_per_minute: int | None = Field(None, ge=1, description=(
        "requests per minute one client address may make without an API key (429 with Retry-After past it); "
        "unset: no limit"))
    # Input limits (a bad upload is a 4xx, never a crash or an out-of-memory).
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0, description="bytes of one request body at most")
    max_pixels: int = Field(MAX_PIXELS, gt=0, description="width x height of one decoded image at most "
                                                          "(decompression bombs)")
    max_images: int = Field(32, ge=1, description="images per request at most")
    min_image_side: int = Field(MIN_SIDE, ge=1, description="smaller images are refused (no usable content)")
    max_top_k: int = Field(100, ge=1, description="labels per image at most (a larger top_k is capped, never "
                                                  "refused)")
    # Reading requests: a connection must deliver a request's headers, and then its whole body, within these.
    header_timeout_s: float = Field(10.0, gt=0, description="seconds a connection has to send a request's headers")
    body_timeout_s: float = Field(60.0, gt=0, description="seconds a request has to send its whole body (408)")
    # Triton calls.
    request_timeout_s: float = Field(30.0, gt=0, description="seconds one inference round trip may take (504)")
    retry_after_s: int = Field(2, ge=1, description="Retry-After of a 503 while Triton is down or loading")
    decode_threads: int = Field(4, ge=1, description="threads decoding images off the event loop")
    server_timing: bool = Field(False, description=(
        "answer each inference request with a Server-Timing header: milliseconds spent reading the upload, "
        "decoding it, in Triton round trips and in total (off by default: it tells clients how loaded the server "
        "is)"))
    decode_budget_pixels: int = Field(96_000_000, ge=1, description=(
        "pixels decoded at once over all requests (~4 bytes each, twice with alpha), read from the headers before "
        "decoding; an image that can never fit is a 413 (gateway/decode_budget.py)"))
    routing_interval_s: float = Field(0.5, gt=0, description="seconds between re-reads of the serving versions "
                                                             "the repository publishes (gateway/routing.py)")
    # Canary and shadow rollouts (gateway/rollout_traffic.py, docs/rollouts.md).
    rollout_report_interval_s: float = Field(1.0, gt=0, description=(
        "seconds between two writes of this gateway's guard figures of a running rollout (REPO/NAME/.rollout/), "
        "which the control plane sums to judge it"))
    rollout_max_comparisons: int = Field(16, ge=1, description=(
        "background calls a rollout may have in flight on this gateway to compare the candidate with the serving "
        "version; further comparisons are skipped (counted), never queued"))
    # Similar-image search (lomar_serve/search, docs/search.md).
    search_dir: Path | None = Field(None, description="where embedded collections live (unset: "
                                                      "REPOSITORY/../collections)")
    search_engine: Literal["embedded", "pgvector", "none"] = Field("embedded", description=(
        "embedded (SQLite + usearch files in LOMAR_SEARCH_DIR, held by one gateway at a time), pgvector "
        "(PostgreSQL, shared by a fleet) or none (this gateway serves no collections)"))
    search_pg_url: SecretStr | None = Field(None, description="postgresql://... of the pgvector engine")
    search_pg_build_memory_mb: int = Field(1024, ge=64, description="maintenance_work_mem (MiB) of a pgvector "
                                                                    "HNSW build")
    search_pg_pool_size: int = Field(DEFAULT_POOL_SIZE, ge=1, le=1000, description=(
        "connections this gateway keeps to the pgvector database, shared by every collection (each re-index lease "
        "or concurrent graph build holds one more)"))
    search_exact_limit: int = Field(DEFAULT_EXACT_LIMIT, ge=0, description=(
        "collections of up to this many images are searched exactly (recall 1.0), larger ones through their HNSW "
        "graph (docs/search.md, Recall)"))
    search_ef_search: int = Field(DEFAULT_EF_SEARCH, ge=1, le=1000, description=(
        "HNSW ef_search of graph searches (usearch and pgvector): higher finds more true neighbours, more slowly "
        "(docs/search.md, Recall)"))
    search_reindex_batch: int = Field(16, ge=1, description="images per inference call of a re-index")
    search_check_interval_s: float = Field(5.0, gt=0, description="seconds between checks of the collections' "
                                                                  "model versions against the serving ones")
    search_hold_s: float = Field(600.0, ge=0, description="seconds at most this gateway holds the old version "
                                                          "after a switch while it re-indexes collections")
    # Bounds on what clients may store (a create or an add past them is a 4xx, nothing is written).
    search_max_collections: int = Field(1000, ge=1, description="collections at most (409 limit_reached past it)")
    search_max_images: int = Field(1_000_000, ge=1, description="images per collection at most (409 limit_reached "
                                                                "past it)")
    search_max_metadata_bytes: int = Field(4096, ge=2, description="bytes of one image's metadata as compact JSON "
                                                                   "at most (413 past it)")
    search_max_metadata_keys: int = Field(64, ge=1, description="keys of one image's metadata at most (422 past it)")

    @field_validator("open_scopes", mode="before")
    @classmethod
    def _split_scopes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("triton_url")
    @classmethod
    def _strip_scheme(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else triton_address(value)

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (for `uvicorn lomar_serve.gateway.app:create_app --factory`)."""
    return Settings()
