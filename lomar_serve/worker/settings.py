"""`lomar worker`'s settings: LOMAR_* environment variables, overridden by its flags (the executor's own are
executors/settings.py). Every variable: docs/settings.md."""
from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr

from lomar_serve.common.settings import (DEFAULT_MODEL_REPOSITORY, ControlPlaneUrl, DataRoots, JobsDir, ModelRepository,
                                         OptionalAdminToken, RoleSettings, StoreUrl)
from lomar_serve.jobs.files import default_jobs_dir
from lomar_serve.jobs.store import STORE_FILE


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(RoleSettings):
    """What a worker needs; immutable after construction."""

    store_url: StoreUrl = None
    jobs_dir: JobsDir = None
    model_repository: ModelRepository = DEFAULT_MODEL_REPOSITORY
    worker_id: str = Field(default_factory=default_worker_id, pattern=r"^[A-Za-z0-9._:@-]{1,128}$",
                           description="this worker's name in job records (unset: HOSTNAME-PID)")
    control_plane_url: ControlPlaneUrl = None
    admin_token: OptionalAdminToken = None
    data_roots: DataRoots = ()
    gateway_url: str | None = Field(None, pattern=r"^https?://", description=(
        "http://host:port of the gateway that ingest jobs add images through (`lomar serve` sets its own); unset: "
        "ingest jobs fail, saying so"))
    gateway_api_key: SecretStr | None = Field(None, description=(
        "the API key ingest jobs send (scopes collections:read and collections:write); unset: each ingest job gets "
        "a key of its own from the control plane (LOMAR_CONTROL_PLANE_URL + LOMAR_ADMIN_TOKEN), revoked when it "
        "ends, else goes without one"))
    heartbeat_interval_s: float = Field(2.0, gt=0, description="seconds between a running job's heartbeats (well "
                                                               "under the control plane's "
                                                               "LOMAR_JOB_HEARTBEAT_TIMEOUT_S)")
    poll_interval_s: float = Field(1.0, gt=0, description="seconds between reads of a running stage's progress")
    terminate_grace_s: float = Field(10.0, gt=0, description="SIGTERM, then SIGKILL after this many seconds, when "
                                                             "a stage is stopped")
    store_retry_s: float = Field(15.0, gt=0, description="seconds a store call (claim, heartbeat, a job's record) is "
                                                         "tried again while the job store is unreachable; past them "
                                                         "with a job's record unwritten the worker exits non-zero "
                                                         "(keep it at the control plane's "
                                                         "LOMAR_JOB_HEARTBEAT_TIMEOUT_S)")

    @property
    def resolved_jobs_dir(self) -> Path:
        return (self.jobs_dir or default_jobs_dir()).resolve()

    @property
    def resolved_store_url(self) -> str:
        return self.store_url.get_secret_value() if self.store_url else str(self.resolved_jobs_dir / STORE_FILE)
