"""The lifecycle's composition root: what the control plane's admin API needs, built once per control plane.

    lifecycle = Lifecycle(ControlPlaneSettings(admin_token=..., triton_urls=("triton-a:8000", "triton-b:8000")))
    lifecycle.start()          # the job queue's sweeper (workers run the jobs), the reconcile loop, rollout guards
    lifecycle.deployer.deploy("lomar_classifier", 3)
    lifecycle.rollouts.begin("lomar_classifier", 4, RolloutPlan("canary", (10.0, 50.0)))
    lifecycle.close()
"""
from __future__ import annotations

import logging
from pathlib import Path

from contracts.model_repository import API_KEYS_FILE
from lomar_serve.control_plane.auth import AdminAuth
from lomar_serve.control_plane.deploy import Deployer, DeploySettings
from lomar_serve.control_plane.keys import KeyService
from lomar_serve.control_plane.metrics import ControlPlaneMetrics
from lomar_serve.control_plane.queue import JobQueue, QueueSettings
from lomar_serve.control_plane.reconcile import Reconciler, ReconcileSettings
from lomar_serve.control_plane.rollouts import RolloutController, RolloutSettings
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.jobs.files import default_jobs_dir
from lomar_serve.jobs.paths import DataRoots
from lomar_serve.jobs.repository_view import RepositoryView
from lomar_serve.jobs.store import STORE_FILE, open_store

LOGGER = logging.getLogger(__name__)


class Lifecycle:
    """Admin auth, data-root policy, the job queue, the fleet's deployer and its rollouts, the data plane's API keys,
    the reconcile loop and the metrics.

    Jobs are only queued here; workers (`lomar worker`, lomar_serve/worker/runner.py) run them.
    """

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.jobs_dir = (settings.jobs_dir or default_jobs_dir()).resolve()
        self.auth = AdminAuth(settings.admin_token.get_secret_value())
        self.roots = DataRoots.of(settings.data_roots)
        store_url = settings.store_url.get_secret_value() if settings.store_url else self.jobs_dir / STORE_FILE
        self.store = open_store(store_url)
        self.repository = RepositoryView(Path(settings.model_repository))
        self.deployer = Deployer(settings.triton_urls, self.repository, self.store,
                                 settings=DeploySettings(drain_s=settings.deploy_drain_s, hold_s=settings.deploy_hold_s,
                                                         pause_dir=settings.deploy_pause_dir))
        self.rollouts = RolloutController(self.deployer, RolloutSettings(
            interval_s=settings.rollout_interval_s, lease_s=settings.rollout_lease_s, drain_s=settings.deploy_drain_s,
            pause_dir=settings.deploy_pause_dir))
        self.keys = KeyService(self.store, self.repository.root / API_KEYS_FILE)
        self.reconciler = Reconciler(self.deployer, ReconcileSettings(interval_s=settings.reconcile_interval_s,
                                                                      drain_s=settings.deploy_drain_s),
                                     publish_keys=self.keys.reconcile, publish_rollouts=self.rollouts.reconcile)
        self.jobs = JobQueue(self.store, QueueSettings(jobs_dir=self.jobs_dir,
                                                       heartbeat_timeout_s=settings.job_heartbeat_timeout_s))
        self.metrics = ControlPlaneMetrics(self.store)

    def start(self) -> None:
        """Start the job queue's sweeper (running jobs whose worker went silent become `interrupted`), the
        reconcile loop (deploy histories repaired and rollouts published before this returns; Tritons driven to
        config.pbtxt after) and the rollouts' guard loop."""
        self.jobs.start()
        self.reconciler.start()
        self.rollouts.start()
        LOGGER.info("lifecycle ready: admin API %s, jobs in %s, job store %s, data roots %s, Tritons %s",
                    "enabled" if self.auth.enabled else "disabled (no LOMAR_ADMIN_TOKEN)", self.jobs_dir,
                    self.store.describe(), self.roots.describe(), ", ".join(self.settings.triton_urls))

    def close(self) -> None:
        self.rollouts.stop()
        self.reconciler.stop()
        self.jobs.stop()
