"""`lomar worker`: claims queued jobs from the job store and runs them: retrain jobs (they need the `train` and
`export` extras) and ingest jobs (a folder added to a collection through LOMAR_GATEWAY_URL, worker/ingest.py). Any number of workers, on any machines that share the store,
JOBS_DIR and the model repository.

    LOMAR_JOBS_DIR=/srv/jobs LOMAR_MODEL_REPOSITORY=/srv/models lomar worker    # store: JOBS_DIR/lifecycle.sqlite
    LOMAR_STORE_URL=postgresql://lomar@db/lomar LOMAR_CONTROL_PLANE_URL=http://control:8100 \\
        LOMAR_ADMIN_TOKEN=... lomar worker --worker-id gpu-1

Settings come from LOMAR_* environment variables (worker/settings.py, every one in docs/settings.md); flags
override them. Auto-deploy goes through the control
plane's admin API (LOMAR_CONTROL_PLANE_URL + LOMAR_ADMIN_TOKEN); without them a job asking for it records that
auto-deploy is not available. SIGINT and SIGTERM stop the worker: the running job's stage is terminated and the
job marked `interrupted` (resume it to continue from its last checkpoint).

The worker rides out an outage of the job store for up to LOMAR_STORE_RETRY_S (its running job goes on; progress
is written again when the store is back). Exit status:
    0  stopped by SIGINT or SIGTERM
    1  could not start (the store or the folders cannot be opened)
    2  invalid settings or flags
    3  the worker cannot go on: the store stayed unreachable past LOMAR_STORE_RETRY_S while a job's record had to
       be written (that job is left `running`, and the control plane's sweeper marks it `interrupted`, resumable,
       once its heartbeat stops), or one of its threads crashed (the traceback is in the log). Restart it: a
       supervisor (systemd, Kubernetes, `lomar serve`) does.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from lomar_serve.clients.admin import AdminClient, AdminError
from lomar_serve.common.processes import restore_signals, start_role, stop_on_signals
from lomar_serve.common.settings import add_flags
from lomar_serve.jobs.errors import DeployError, StoreUnavailable
from lomar_serve.jobs.store import open_store
from lomar_serve.worker.executors import ExecutorSettings, make_executor
from lomar_serve.worker.ingest import GatewayAccess
from lomar_serve.worker.runner import JobSettings, Worker
from lomar_serve.worker.settings import WorkerSettings

LOGGER = logging.getLogger("lomar_serve.worker.main")
SWITCH_WAIT_S = 600.0  # an auto-deploy asks again this long while another switch runs
EXIT_FAILED = 3  # the worker cannot go on (module docstring)


def control_plane_deploy(url: str, token: str | None, *, wait_s: float = SWITCH_WAIT_S,
                         retry_s: float = 2.0) -> Callable[[str, str], dict[str, Any]]:
    """deploy(name, version) through the control plane's admin API, for a worker's auto-deploy. The control plane
    refuses a switch at once while another runs (409 switch_in_progress); the worker, which is still there to see
    the outcome, asks again every `retry_s` for at most `wait_s`."""
    client = AdminClient(url, token=token)

    def deploy(name: str, version: str) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return client.deploy(name, int(version))
            except AdminError as error:
                if error.code != "switch_in_progress" or time.monotonic() + retry_s > deadline:
                    raise DeployError(f"the control plane refused the deploy: {error}") from error
                LOGGER.info("auto-deploy of %s version %s waits: %s", name, version, error)
                time.sleep(retry_s)

    return deploy


def build_worker(settings: WorkerSettings) -> Worker:
    """The worker of these settings (its store opened, its control-plane hooks made)."""
    jobs_dir = settings.resolved_jobs_dir
    jobs_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.resolved_store_url)
    deploy, admin = None, None
    if settings.control_plane_url:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        deploy = control_plane_deploy(settings.control_plane_url, token)
        admin = AdminClient(settings.control_plane_url, token=token, timeout_s=30.0)
    gateway = None
    if settings.gateway_url:
        api_key = settings.gateway_api_key.get_secret_value() if settings.gateway_api_key else None
        gateway = GatewayAccess(settings.gateway_url, api_key=api_key, admin=admin)
    repository = settings.model_repository.resolve()
    executor = make_executor(ExecutorSettings(), jobs_dir=jobs_dir, model_repository=repository,
                             data_roots=tuple(root.resolve() for root in settings.data_roots))
    job_settings = JobSettings(jobs_dir=jobs_dir, model_repository=repository, executor=executor,
                               poll_interval_s=settings.poll_interval_s,
                               terminate_grace_s=settings.terminate_grace_s,
                               heartbeat_interval_s=settings.heartbeat_interval_s,
                               store_retry_s=settings.store_retry_s)
    return Worker(store, job_settings, settings.worker_id, deploy=deploy, gateway=gateway)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, WorkerSettings, {
        "--store-url": "store_url", "--jobs-dir": "jobs_dir", "--model-repository": "model_repository",
        "--worker-id": "worker_id", "--control-plane-url": "control_plane_url", "--gateway-url": "gateway_url",
        "--log-level": "log_level"})
    return parser


def main(argv: list[str]) -> int:
    settings = start_role(WorkerSettings, build_parser(), argv, LOGGER)
    if settings is None:
        return 2
    try:
        worker = build_worker(settings)
    except (OSError, StoreUnavailable) as error:
        print(f"lomar worker: {error}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    previous = stop_on_signals(stopping, LOGGER)
    worker.start()
    try:
        while not stopping.wait(1.0) and worker.failure is None:
            pass
    finally:
        worker.stop()
        restore_signals(previous)
    if worker.failure is not None:
        LOGGER.error("worker %s cannot go on (the reason is logged above); exiting with status %d, to be "
                     "restarted", settings.worker_id, EXIT_FAILED)
        return EXIT_FAILED
    LOGGER.info("worker %s stopped", settings.worker_id)
    return 0
