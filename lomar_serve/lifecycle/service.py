"""The lifecycle's composition root: what the admin API needs, built once per gateway process.

    lifecycle = Lifecycle(LifecycleConfig(admin_token=..., data_roots=(...), jobs_dir=..., model_repository=...,
                                          triton_url="127.0.0.1:8001"))
    lifecycle.start()          # interrupted-job recovery, job worker, deployed versions kept loaded in Triton
    lifecycle.routing.serving_version("lomar_classifier")   # what the inference path asks Triton for
    lifecycle.close()
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lomar_serve.lifecycle.auth import AdminAuth
from lomar_serve.lifecycle.deploy import Deployer, DeploySettings, Routing
from lomar_serve.lifecycle.jobs import JobRunner, JobSettings
from lomar_serve.lifecycle.paths import DataRoots
from lomar_serve.lifecycle.repository_view import RepositoryView
from lomar_serve.lifecycle.store import LifecycleStore
from lomar_serve.lifecycle.watch import DeploymentWatcher
from lomar_serve.settings import Settings

LOGGER = logging.getLogger(__name__)
STORE_FILE = "lifecycle.sqlite"


def default_jobs_dir(model_repository: Path) -> Path:
    """Job records and outputs live next to the model repository: REPO/../jobs."""
    return Path(model_repository).resolve().parent / "jobs"


@dataclass(frozen=True)
class LifecycleConfig:
    model_repository: Path
    triton_url: str  # "host:port" of Triton's HTTP endpoint
    admin_token: str | None = None  # None: the admin API is disabled
    data_roots: tuple[Path, ...] = ()  # where job data may come from
    jobs_dir: Path | None = None  # None: default_jobs_dir(model_repository)
    deploy: DeploySettings = field(default_factory=DeploySettings)
    job_memory_gb: float | None = None  # LOMAR_JOB_MEMORY_GB; None: 3/4 of this machine's memory (lifecycle.budget)

    def __repr__(self) -> str:  # the token never appears in logs
        return (f"LifecycleConfig(model_repository={self.model_repository}, triton_url={self.triton_url}, "
                f"admin_token={'********' if self.admin_token else None}, data_roots={self.data_roots}, "
                f"jobs_dir={self.jobs_dir})")


class Lifecycle:
    """Admin auth, data-root policy, job runner, deployer and the routing table of one gateway."""

    def __init__(self, config: LifecycleConfig, on_switch: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.jobs_dir = (config.jobs_dir or default_jobs_dir(config.model_repository)).resolve()
        self.auth = AdminAuth(config.admin_token)
        self.roots = DataRoots.of(config.data_roots)
        self.store = LifecycleStore(self.jobs_dir / STORE_FILE)
        self.routing = Routing(self.store)
        self.repository = RepositoryView(Path(config.model_repository))
        self.deployer = Deployer(config.triton_url, self.repository, self.store, self.routing,
                                 settings=config.deploy, on_switch=on_switch)
        self.jobs = JobRunner(self.store, JobSettings(jobs_dir=self.jobs_dir, model_repository=self.repository.root),
                              serving_version=self.deployer.serving_version, deploy=self.deployer.deploy)
        self.watcher = DeploymentWatcher(self.deployer)

    def start(self) -> None:
        """Recover jobs, start the worker, re-apply recorded deployments in Triton and keep them applied."""
        self.jobs.start()
        self.deployer.restore()
        self.watcher.start()
        LOGGER.info("lifecycle ready: admin API %s, jobs in %s, data roots %s",
                    "enabled" if self.auth.enabled else "disabled (no LOMAR_ADMIN_TOKEN)", self.jobs_dir,
                    self.roots.describe())

    def close(self) -> None:
        self.watcher.stop()
        self.jobs.stop()


def build_lifecycle(settings: Settings, on_switch: Callable[[str, str], None] | None = None) -> Lifecycle | None:
    """The gateway's lifecycle from its settings (needs `settings.triton_url`).

    Without an admin token the lifecycle still routes to the recorded deployments; if its store cannot be
    created then (e.g. a read-only model repository) the gateway runs without it. With a token that is an error.
    """
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    config = LifecycleConfig(model_repository=settings.model_repository, triton_url=str(settings.triton_url),
                             admin_token=token, data_roots=tuple(settings.data_roots), jobs_dir=settings.jobs_dir,
                             deploy=DeploySettings(drain_s=settings.deploy_drain_s))
    try:
        return Lifecycle(config, on_switch)
    except (OSError, sqlite3.Error) as error:
        if token:
            raise
        LOGGER.warning("model lifecycle unavailable (%s); admin API disabled, Triton's version policy applies",
                       error)
        return None
