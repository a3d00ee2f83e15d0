"""`lomar worker`: claims queued retrain jobs from the job store and runs them (needs the `train` and `export`
extras). Any number of workers, on any machines that share the store, JOBS_DIR and the model repository.

    LOMAR_JOBS_DIR=/srv/jobs LOMAR_MODEL_REPOSITORY=/srv/models lomar worker    # store: JOBS_DIR/lifecycle.sqlite
    LOMAR_STORE_URL=postgresql://lomar@db/lomar LOMAR_CONTROL_PLANE_URL=http://control:8100 \\
        LOMAR_ADMIN_TOKEN=... lomar worker --worker-id gpu-1

Settings come from LOMAR_* environment variables; flags override them. Auto-deploy goes through the control
plane's admin API (LOMAR_CONTROL_PLANE_URL + LOMAR_ADMIN_TOKEN); without them a job asking for it records that
auto-deploy is not available. SIGINT and SIGTERM stop the worker: the running job's stage is terminated and the
job marked `interrupted` (resume it to continue from its last checkpoint).
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lomar_serve.clients.admin import AdminClient, AdminError
from lomar_serve.common.processes import configure_logging, load_settings, restore_signals, stop_on_signals
from lomar_serve.common.settings import DEFAULT_MODEL_REPOSITORY, PathList, log_level
from lomar_serve.jobs.errors import DeployError, StoreUnavailable
from lomar_serve.jobs.files import default_jobs_dir
from lomar_serve.jobs.store import STORE_FILE, open_store
from lomar_serve.worker.executors import ExecutorSettings, make_executor
from lomar_serve.worker.runner import JobSettings, Worker

LOGGER = logging.getLogger("lomar_serve.worker.main")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(BaseSettings):
    """What a worker needs; immutable after construction."""

    model_config = SettingsConfigDict(env_prefix="LOMAR_", frozen=True, extra="ignore")

    store_url: SecretStr | None = None  # a SQLite file or postgresql://...; None: JOBS_DIR/lifecycle.sqlite
    jobs_dir: Path | None = None  # shared with the control plane; None: next to the model repository
    model_repository: Path = DEFAULT_MODEL_REPOSITORY  # shared and writable: exports add versions here
    worker_id: str = Field(default_factory=default_worker_id, pattern=r"^[A-Za-z0-9._:@-]{1,128}$")
    control_plane_url: str | None = None  # http://host:port of the control plane (auto-deploy)
    admin_token: SecretStr | None = None  # the control plane's admin token
    data_roots: PathList = ()  # LOMAR_DATA_ROOTS: what jobs read (mounted into Kubernetes Jobs)
    heartbeat_interval_s: float = Field(2.0, gt=0)  # well under the control plane's LOMAR_JOB_HEARTBEAT_TIMEOUT_S
    poll_interval_s: float = Field(1.0, gt=0)  # a running stage's progress is read this often
    terminate_grace_s: float = Field(10.0, gt=0)  # SIGTERM, then SIGKILL after this long
    log_level: str = "info"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return log_level(value)

    @property
    def resolved_jobs_dir(self) -> Path:
        return (self.jobs_dir or default_jobs_dir(self.model_repository)).resolve()

    @property
    def resolved_store_url(self) -> str:
        return self.store_url.get_secret_value() if self.store_url else str(self.resolved_jobs_dir / STORE_FILE)


def control_plane_deploy(url: str, token: str | None) -> Callable[[str, str], dict[str, Any]]:
    """deploy(name, version) through the control plane's admin API, for a worker's auto-deploy."""
    client = AdminClient(url, token=token)

    def deploy(name: str, version: str) -> dict[str, Any]:
        try:
            return client.deploy(name, int(version))
        except AdminError as error:
            raise DeployError(f"the control plane refused the deploy: {error}") from error

    return deploy


def build_worker(settings: WorkerSettings) -> Worker:
    """The worker of these settings (its store opened, its control-plane hooks made)."""
    jobs_dir = settings.resolved_jobs_dir
    jobs_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.resolved_store_url)
    deploy = None
    if settings.control_plane_url:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        deploy = control_plane_deploy(settings.control_plane_url, token)
    repository = settings.model_repository.resolve()
    executor = make_executor(ExecutorSettings(), jobs_dir=jobs_dir, model_repository=repository,
                             data_roots=tuple(root.resolve() for root in settings.data_roots))
    job_settings = JobSettings(jobs_dir=jobs_dir, model_repository=repository, executor=executor,
                               poll_interval_s=settings.poll_interval_s,
                               terminate_grace_s=settings.terminate_grace_s,
                               heartbeat_interval_s=settings.heartbeat_interval_s)
    return Worker(store, job_settings, settings.worker_id, deploy=deploy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store-url", help="job store: a SQLite file or postgresql://... "
                                            "(default: JOBS_DIR/lifecycle.sqlite)")
    parser.add_argument("--jobs-dir", type=Path, help="job logs and checkpoints (default: REPOSITORY/../jobs)")
    parser.add_argument("--model-repository", type=Path, help="the model repository exports write to")
    parser.add_argument("--worker-id", help="this worker's name in job records (default: HOSTNAME-PID)")
    parser.add_argument("--control-plane-url", help="http://host:port of the control plane, for auto-deploy")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    settings = load_settings(WorkerSettings, "lomar worker", overrides)
    if settings is None:
        return 2
    configure_logging(settings.log_level)
    try:
        worker = build_worker(settings)
    except (OSError, StoreUnavailable) as error:
        print(f"lomar worker: {error}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    previous = stop_on_signals(stopping, LOGGER)
    worker.start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        worker.stop()
        restore_signals(previous)
    LOGGER.info("worker %s stopped", settings.worker_id)
    return 0
