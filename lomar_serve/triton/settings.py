"""How a `lomar` process launches the bundled Triton: `lomar triton` (one member of a fleet) and `lomar serve` (its
own Triton, on loopback). The ports default to free ones, except `lomar triton`'s HTTP port, which its gateways and
the control plane must know. Every variable: docs/settings.md.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from lomar_serve.common.settings import DEFAULT_MODEL_REPOSITORY, ModelRepository, RoleSettings

DEFAULT_TRITON_HTTP_PORT = 8010  # `lomar triton`'s


class TritonLaunchSettings(RoleSettings):
    """A Triton launched and supervised on the model repository; immutable after construction."""

    model_repository: ModelRepository = DEFAULT_MODEL_REPOSITORY
    triton_http_port: int = Field(0, ge=0, le=65535, description="Triton's HTTP endpoint (0: a free port)")
    triton_grpc_port: int = Field(0, ge=0, le=65535, description="Triton's gRPC endpoint (0: a free port)")
    triton_metrics_port: int = Field(0, ge=0, le=65535, description="Triton's Prometheus metrics (0: a free port)")
    triton_log: Path | None = Field(None, description="file for the launched Triton's log (unset: a temporary file)")
    triton_start_timeout_s: float = Field(120.0, gt=0, description="seconds one start of Triton may take")
    triton_max_restarts: int = Field(1000, ge=0, description="the supervisor gives up after this many restarts in "
                                                             "a row")


class TritonSettings(TritonLaunchSettings):
    """`lomar triton`: Triton alone, its endpoints on `triton_host`."""

    triton_host: str = Field("127.0.0.1", description="address Triton's endpoints bind to (its HTTP endpoint must "
                                                      "never face untrusted clients)")
    triton_http_port: int = Field(DEFAULT_TRITON_HTTP_PORT, ge=0, le=65535,
                                  description="Triton's HTTP endpoint (0: a free port)")

    @model_validator(mode="after")
    def _repository_is_a_folder(self) -> TritonSettings:
        if not self.model_repository.is_dir():
            raise ValueError(f"model repository {self.model_repository} is not a directory (give --model-repository "
                             "or LOMAR_MODEL_REPOSITORY)")
        return self
