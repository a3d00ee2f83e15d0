"""The lifecycle's composition root: what the control plane's admin API needs, built once per control plane.

    lifecycle = Lifecycle(LifecycleConfig(admin_token=..., data_roots=(...), jobs_dir=..., model_repository=...,
                                          triton_urls=("triton-a:8000", "triton-b:8000")))
    lifecycle.start()          # the job queue's sweeper (workers run the jobs)
    lifecycle.deployer.deploy("lomar_classifier", 3)
    lifecycle.close()
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lomar_serve.control_plane.auth import AdminAuth
from lomar_serve.control_plane.deploy import Deployer, DeploySettings
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.jobs.files import default_jobs_dir
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.store import STORE_FILE, open_store

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LifecycleConfig:
    model_repository: Path
    triton_urls: tuple[str, ...]  # "host:port" of the HTTP endpoint of every Triton of the fleet
    admin_token: str | None = None  # None: the admin API is disabled
    data_roots: tuple[Path, ...] = ()  # where job data may come from
    jobs_dir: Path | None = None  # None: default_jobs_dir(model_repository)
    store_url: str | None = None  # a SQLite file or postgresql://...; None: JOBS_DIR/lifecycle.sqlite
    job_heartbeat_timeout_s: float = 15.0  # a running job whose worker is silent this long is interrupted
    deploy: DeploySettings = field(default_factory=DeploySettings)
    job_memory_gb: float | None = None  # LOMAR_JOB_MEMORY_GB; None: 3/4 of this machine's memory (jobs/budget.py)

    def __repr__(self) -> str:  # the token never appears in logs
        return (f"LifecycleConfig(model_repository={self.model_repository}, triton_urls={self.triton_urls}, "
                f"admin_token={'********' if self.admin_token else None}, data_roots={self.data_roots}, "
                f"jobs_dir={self.jobs_dir}, store_url={'********' if self.store_url else None})")


class Lifecycle:
    """Admin auth, data-root policy, the job queue and the fleet's deployer.

    Jobs are only queued here; workers (`lomar worker`, lomar_serve/worker/runner.py) run them.
    """

    def __init__(self, config: LifecycleConfig) -> None:
        self.config = config
        self.jobs_dir = (config.jobs_dir or default_jobs_dir(config.model_repository)).resolve()
        self.auth = AdminAuth(config.admin_token)
        self.roots = DataRoots.of(config.data_roots)
        self.store = open_store(config.store_url or self.jobs_dir / STORE_FILE)
        self.repository = RepositoryView(Path(config.model_repository))
        self.deployer = Deployer(config.triton_urls, self.repository, self.store, settings=config.deploy)
        self.jobs = JobQueue(self.store, QueueSettings(jobs_dir=self.jobs_dir,
                                                       heartbeat_timeout_s=config.job_heartbeat_timeout_s))

    def start(self) -> None:
        """Start the job queue's sweeper (running jobs whose worker went silent become `interrupted`)."""
        self.jobs.start()
        LOGGER.info("lifecycle ready: admin API %s, jobs in %s, job store %s, data roots %s, Tritons %s",
                    "enabled" if self.auth.enabled else "disabled (no LOMAR_ADMIN_TOKEN)", self.jobs_dir,
                    self.store.describe(), self.roots.describe(), ", ".join(self.config.triton_urls))

    def close(self) -> None:
        self.jobs.stop()


def build_lifecycle(settings: ControlPlaneSettings) -> Lifecycle:
    """The control plane's lifecycle from its settings."""
    config = LifecycleConfig(model_repository=settings.model_repository, triton_urls=settings.triton_urls,
                             admin_token=settings.admin_token.get_secret_value(),
                             data_roots=tuple(settings.data_roots), jobs_dir=settings.jobs_dir,
                             store_url=settings.store_url.get_secret_value() if settings.store_url else None,
                             job_heartbeat_timeout_s=settings.job_heartbeat_timeout_s,
                             job_memory_gb=settings.job_memory_gb,
                             deploy=DeploySettings(drain_s=settings.deploy_drain_s, hold_s=settings.deploy_hold_s))
    return Lifecycle(config)
