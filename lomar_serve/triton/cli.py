"""`lomar triton`: the Triton server bundled with nvidia-pytriton, launched on a model repository and supervised
(restarted when it dies), as one member of a fleet (docs/fleet.md). On GPU hosts NVIDIA's container does the same.

    lomar triton --model-repository /shared/models --http-port 8010
    LOMAR_MODEL_REPOSITORY=/shared/models LOMAR_TRITON_HTTP_PORT=8020 LOMAR_TRITON_GRPC_PORT=8021 lomar triton

Triton loads the version each model's config.pbtxt publishes (a broken or undeployed version on disk is never
loaded); a model that fails to load neither stops it nor makes it unready. Its endpoints bind to --host
(127.0.0.1 by default: Triton's HTTP endpoint must never face untrusted clients). SIGINT/SIGTERM stop it.
Settings come from LOMAR_* variables (docs/settings.md); flags override them.
"""
from __future__ import annotations

import argparse
import logging
import threading

from lomar_serve.common.processes import start_role, stop_on_signals
from lomar_serve.common.settings import add_flags
from lomar_serve.triton.server import TritonServerConfig
from lomar_serve.triton.settings import TritonLaunchSettings, TritonSettings
from lomar_serve.triton.supervisor import RestartPolicy, TritonSupervisor

LOGGER = logging.getLogger("lomar_serve.triton")


def launch_config(settings: TritonLaunchSettings, host: str = "127.0.0.1") -> TritonServerConfig:
    """How `lomar serve` and `lomar triton` run Triton: every model at start, each at its published version; a
    model or version that fails to load does not stop Triton or make it unready (the gateway's /readyz asks about
    the versions it serves)."""
    return TritonServerConfig(model_repository=settings.model_repository.resolve(), exit_on_error=False,
                              strict_readiness=False, host=host, http_port=settings.triton_http_port,
                              grpc_port=settings.triton_grpc_port, metrics_port=settings.triton_metrics_port)


def launch_supervised(settings: TritonLaunchSettings, stopping: threading.Event,
                      host: str = "127.0.0.1") -> TritonSupervisor | None:
    """Start Triton and wait until it is ready; None if it never was, or `stopping` was set meanwhile."""
    policy = RestartPolicy(start_timeout_s=settings.triton_start_timeout_s, max_restarts=settings.triton_max_restarts)
    config = launch_config(settings, host)
    supervisor = TritonSupervisor(config, policy=policy, log_path=settings.triton_log)
    LOGGER.info("starting Triton on %s (http %s, grpc %s)", config.model_repository, supervisor.http_url,
                supervisor.grpc_url)
    supervisor.start()
    while not supervisor.wait_ready(timeout_s=0.5):
        if stopping.is_set() or not supervisor.is_running():
            if not stopping.is_set():
                LOGGER.error("Triton could not be started: %s", supervisor.failure)
            supervisor.stop()
            return None
    LOGGER.info("Triton ready (pid %s)", supervisor.pid)
    return supervisor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar triton", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, TritonSettings, {
        "--model-repository": "model_repository", "--host": "triton_host", "--http-port": "triton_http_port",
        "--grpc-port": "triton_grpc_port", "--metrics-port": "triton_metrics_port", "--log": "triton_log",
        "--start-timeout": "triton_start_timeout_s", "--log-level": "log_level"})
    return parser


def main(argv: list[str]) -> int:
    settings = start_role(TritonSettings, build_parser(), argv, LOGGER)
    if settings is None:
        return 2
    stopping = threading.Event()
    stop_on_signals(stopping, LOGGER)
    supervisor = launch_supervised(settings, stopping, host=settings.triton_host)
    if supervisor is None:
        return 0 if stopping.is_set() else 1
    try:
        stopping.wait()
    finally:
        LOGGER.info("stopping Triton")
        supervisor.stop()
    return 0
