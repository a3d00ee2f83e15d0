"""Control-plane settings: LOMAR_* environment variables (pydantic-settings), overridden by `lomar control-plane`
flags, validated once at start-up, logged with secrets masked. Every variable: docs/settings.md."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from lomar_serve.common.settings import (DEFAULT_CONTROL_PORT, DEFAULT_MODEL_REPOSITORY, AdminToken, DataRoots,
                                         JobsDir, ModelRepository, RoleSettings, StoreUrl, triton_address)


class ControlPlaneSettings(RoleSettings):
    # The admin API listens on loopback by default: it is never the public inference port.
    control_host: str = Field("127.0.0.1", description="address the admin API listens on (loopback: open it only "
                                                       "behind TLS and a firewall)")
    control_port: int = Field(DEFAULT_CONTROL_PORT, ge=0, le=65535, description="the admin API's port")
    admin_token: AdminToken  # required: an admin API without a token is not started
    triton_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        min_length=1, description="every Triton of the fleet: host:port of their HTTP endpoints, comma-separated")
    model_repository: ModelRepository = DEFAULT_MODEL_REPOSITORY
    jobs_dir: JobsDir = None
    store_url: StoreUrl = None
    job_heartbeat_timeout_s: float = Field(15.0, gt=0, description="a running job whose worker has not beaten for "
                                                                   "this long is marked interrupted")
    data_roots: DataRoots = ()
    job_memory_gb: float | None = Field(None, gt=0, allow_inf_nan=False, description=(
        "jobs whose estimated training memory exceeds this many GiB are refused (unset: 3/4 of this machine's "
        "memory; set it to the workers' memory when they run elsewhere)"))
    deploy_drain_s: float = Field(2.0, ge=0, description="seconds between publishing a version and unloading the "
                                                         "old one (>= two gateway routing intervals plus the longest "
                                                         "request)")
    deploy_hold_s: float = Field(600.0, ge=0, description="seconds at most a deploy waits for gateways re-indexing "
                                                          "collections with the old version")
    reconcile_interval_s: float = Field(5.0, gt=0, description=(
        "seconds between two passes of the reconcile loop, which drives every Triton to the versions the model "
        "repository publishes (loads the published version where it is missing, unloads versions neither published "
        "nor held) and repairs a deploy history that disagrees with them; it also runs at start"))
    deploy_pause_dir: Path | None = Field(None, description=(
        "fault injection for tests, unset in production: a switch reaching a step (loading, published, recorded, "
        "draining; a rollout's rollout-recorded, step-recorded, rollout-switched) whose name is a file in this folder "
        "writes STEP.reached there and waits until the file is gone"))
    rollout_interval_s: float = Field(1.0, gt=0, description=(
        "seconds between two judgements of every running canary or shadow rollout by its guards (docs/rollouts.md), "
        "each of which also renews the rollout's lease"))
    rollout_lease_s: float = Field(30.0, gt=0, description=(
        "gateways stop following a running rollout (every request back on the serving version) when the control "
        "plane has not renewed it for this long: no canary runs while the control plane is down"))

    @field_validator("triton_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(triton_address(str(url)) for url in value)  # type: ignore[union-attr]
