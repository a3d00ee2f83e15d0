"""Control-plane settings: LOMAR_* environment variables (pydantic-settings), overridden by `lomar control-plane`
flags, validated once at start-up, logged with secrets masked."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lomar_serve.common.settings import DEFAULT_MODEL_REPOSITORY, PathList, describe, log_level, triton_address

DEFAULT_CONTROL_PORT = 8100


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOMAR_", frozen=True, extra="ignore")

    # The admin API listens on loopback by default: it is never the public inference port.
    control_host: str = "127.0.0.1"
    control_port: int = Field(DEFAULT_CONTROL_PORT, ge=0, le=65535)
    admin_token: SecretStr  # required: an admin API without a token is not started
    # Every Triton of the fleet (LOMAR_TRITON_URLS, comma-separated host:port of their HTTP endpoints).
    triton_urls: Annotated[tuple[str, ...], NoDecode] = Field(min_length=1)
    model_repository: Path = DEFAULT_MODEL_REPOSITORY  # shared and writable: exports land and deploys publish here
    jobs_dir: Path | None = None  # shared: job logs and checkpoints (None: next to the repository)
    store_url: SecretStr | None = None  # a SQLite file (None: JOBS_DIR/lifecycle.sqlite) or postgresql://...
    job_heartbeat_timeout_s: float = Field(15.0, gt=0)  # a running job whose worker is silent this long: interrupted
    data_roots: PathList = ()  # LOMAR_DATA_ROOTS
    # Jobs whose estimated training memory exceeds this are refused (None: 3/4 of this machine's RAM; set it to the
    # workers' memory when they run elsewhere).
    job_memory_gb: float | None = Field(None, gt=0, allow_inf_nan=False)
    deploy_drain_s: float = Field(2.0, ge=0)  # >= two gateway routing intervals plus the longest request
    deploy_hold_s: float = Field(600.0, ge=0)  # at most this long while gateways re-index collections
    log_level: str = "info"

    @field_validator("triton_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(triton_address(str(url)) for url in value)  # type: ignore[union-attr]

    @field_validator("admin_token")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("the admin token must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return log_level(value)

    def describe(self) -> str:
        return describe(self)
