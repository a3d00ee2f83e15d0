"""The lifecycle's composition root: what the control plane's admin API needs, built once per control plane.

    lifecycle = Lifecycle(LifecycleConfig(admin_token=..., data_roots=(...), jobs_dir=..., model_repository=...,
                                          triton_urls=("triton-a:8000", "triton-b:8000")))
    lifecycle.start()          # interrupted-job recovery, job worker
    lifecycle.deployer.deploy("lomar_classifier", 3)
    lifecycle.close()
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.lifecycle.auth import AdminAuth
from lomar_serve.lifecycle.deploy import Deployer, DeploySettings
from lomar_serve.lifecycle.jobs import JobRunner, JobSettings
from lomar_serve.lifecycle.paths import DataRoots
from lomar_serve.lifecycle.repository_view import RepositoryView
from lomar_serve.lifecycle.store import LifecycleStore

LOGGER = logging.getLogger(__name__)
STORE_FILE = "lifecycle.sqlite"


def default_jobs_dir(model_repository: Path) -> Path:
    """Job records and outputs live next to the model repository: REPO/../jobs."""
    return Path(model_repository).resolve().parent / "jobs"


@dataclass(frozen=True)
class LifecycleConfig:
    model_repository: Path
    triton_urls: tuple[str, ...]  # "host:port" of the HTTP endpoint of every Triton of the fleet
    admin_token: str | None = None  # None: the admin API is disabled
    data_roots: tuple[Path, ...] = ()  # where job data may come from
    jobs_dir: Path | None = None  # None: default_jobs_dir(model_repository)
    deploy: DeploySettings = field(default_factory=DeploySettings)

    def __repr__(self) -> str:  # the token never appears in logs
        return (f"LifecycleConfig(model_repository={self.model_repository}, triton_urls={self.triton_urls}, "
                f"admin_token={'********' if self.admin_token else None}, data_roots={self.data_roots}, "
                f"jobs_dir={self.jobs_dir})")


class Lifecycle:
    """Admin auth, data-root policy, job records and runner, and the fleet's deployer."""

    def __init__(self, config: LifecycleConfig) -> None:
        self.config = config
        self.jobs_dir = (config.jobs_dir or default_jobs_dir(config.model_repository)).resolve()
        self.auth = AdminAuth(config.admin_token)
        self.roots = DataRoots.of(config.data_roots)
        self.store = LifecycleStore(self.jobs_dir / STORE_FILE)
        self.repository = RepositoryView(Path(config.model_repository))
        self.deployer = Deployer(config.triton_urls, self.repository, self.store, settings=config.deploy)
        self.jobs = JobRunner(self.store, JobSettings(jobs_dir=self.jobs_dir, model_repository=self.repository.root),
                              serving_version=self.deployer.serving_version, deploy=self.deployer.deploy)

    def start(self) -> None:
        """Recover jobs and start the worker."""
        self.jobs.start()
        LOGGER.info("lifecycle ready: admin API %s, jobs in %s, data roots %s, Tritons %s",
                    "enabled" if self.auth.enabled else "disabled (no LOMAR_ADMIN_TOKEN)", self.jobs_dir,
                    self.roots.describe(), ", ".join(self.config.triton_urls))

    def close(self) -> None:
        self.jobs.stop()


def build_lifecycle(settings: ControlPlaneSettings) -> Lifecycle:
    """The control plane's lifecycle from its settings."""
    config = LifecycleConfig(model_repository=settings.model_repository, triton_urls=settings.triton_urls,
                             admin_token=settings.admin_token.get_secret_value(),
                             data_roots=tuple(settings.data_roots), jobs_dir=settings.jobs_dir,
                             deploy=DeploySettings(drain_s=settings.deploy_drain_s, hold_s=settings.deploy_hold_s))
    return Lifecycle(config)
