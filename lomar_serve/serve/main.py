"""`lomar serve`: everything on one box, each role a process it supervises (`lomar gateway` is the data plane alone).

    lomar serve                                   # Triton on ./model_repository + gateway on 127.0.0.1:8000
    LOMAR_ADMIN_TOKEN=... lomar serve             # + a control plane on 127.0.0.1:8100 and a worker (retrain, deploy)
    lomar serve --host 0.0.0.0 --port 8080 --model-repository /models
    lomar serve --triton-url triton:8000          # use a running Triton (e.g. NVIDIA's container)
    LOMAR_PORT=8080 LOMAR_TRITON_HTTP_PORT=8010 LOMAR_TRITON_GRPC_PORT=8011 LOMAR_TRITON_METRICS_PORT=8012 lomar serve

Triton listens on loopback, on free ports unless pinned. Settings come from LOMAR_* environment variables
(serve/settings.py, every one in docs/settings.md); flags override them. SIGINT and
SIGTERM stop the gateway, then the control plane and worker, then Triton; no process is left behind.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from pydantic import ValidationError

from lomar_serve.common.processes import restore_signals, start_role, stop_on_signals
from lomar_serve.common.settings import add_flags, child_environment
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.gateway.main import build_parser as gateway_parser
from lomar_serve.gateway.main import run_gateway
from lomar_serve.serve.children import ChildProcess
from lomar_serve.serve.settings import ServeSettings
from lomar_serve.triton.cli import launch_supervised
from lomar_serve.triton.supervisor import TritonSupervisor
from lomar_serve.worker.executors.settings import ExecutorSettings
from lomar_serve.worker.settings import WorkerSettings

LOGGER = logging.getLogger("lomar_serve.serve.main")


def build_parser() -> argparse.ArgumentParser:
    parser = gateway_parser("lomar serve", __doc__, ServeSettings)
    add_flags(parser, ServeSettings, {
        "--triton-http-port": "triton_http_port", "--triton-grpc-port": "triton_grpc_port",
        "--triton-metrics-port": "triton_metrics_port", "--triton-log": "triton_log"})
    return parser


def main(argv: list[str]) -> int:
    """`lomar serve`: Triton (unless --triton-url), the gateway, and with LOMAR_ADMIN_TOKEN the control plane and
    a worker as child processes."""
    settings = start_role(ServeSettings, build_parser(), argv, LOGGER)
    if settings is None:
        return 2
    stopping = threading.Event()
    previous = stop_on_signals(stopping, LOGGER)
    supervisor: TritonSupervisor | None = None
    children: list[ChildProcess] = []
    try:
        if settings.triton_url is None:
            supervisor = launch_supervised(settings, stopping)
            if supervisor is None:
                return 0 if stopping.is_set() else 1
            settings = settings.model_copy(update={"triton_url": supervisor.http_url})
        if stopping.is_set():
            return 0
        if settings.admin_token is not None:
            try:
                children = _start_control_roles(settings)
            except ValidationError as error:
                print(f"lomar serve: invalid control-plane settings:\n{error}", file=sys.stderr)
                return 2
        return 0 if run_gateway(settings) or stopping.is_set() else 1
    finally:
        for child in reversed(children):
            LOGGER.info("stopping the %s", child.name)
            child.stop()
        if supervisor is not None:
            LOGGER.info("stopping Triton")
            supervisor.stop()
        restore_signals(previous)


def _local(host: str) -> str:
    """How a process on this box reaches a server listening on `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _start_control_roles(settings: ServeSettings) -> list[ChildProcess]:
    """The control plane (admin API on LOMAR_CONTROL_HOST:PORT, default 127.0.0.1:8100) and one worker, as child
    processes on this box's Triton and repository; their other settings come from the same LOMAR_* environment.

    Raises:
        ValidationError: the control plane's settings (e.g. a too short LOMAR_ADMIN_TOKEN).
    """
    repository = str(settings.model_repository.resolve())
    control = ControlPlaneSettings(triton_urls=str(settings.triton_url), model_repository=repository)
    env = dict(os.environ, LOMAR_TRITON_URLS=str(settings.triton_url), LOMAR_MODEL_REPOSITORY=repository,
               LOMAR_CONTROL_PLANE_URL=f"http://{_local(control.control_host)}:{control.control_port}")
    if settings.port and "LOMAR_GATEWAY_URL" not in env:  # the worker's ingest jobs go through this box's gateway
        env["LOMAR_GATEWAY_URL"] = f"http://{_local(settings.host)}:{settings.port}"
    command = [sys.executable, "-m", "lomar_serve.cli"]
    # Each child gets the settings it reads, and no other role's (the gateway's pgvector URL stays here).
    roles = [ChildProcess("control plane", [*command, "control-plane"],
                          child_environment(env, [ControlPlaneSettings], database=True)),
             ChildProcess("worker", [*command, "worker"],
                          child_environment(env, [WorkerSettings, ExecutorSettings], database=True))]
    for child in roles:
        child.start()
    return roles
