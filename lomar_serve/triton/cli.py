"""`lomar triton`: the Triton server bundled with nvidia-pytriton, launched on a model repository and supervised
(restarted when it dies), as one member of a fleet (docs/fleet.md). On GPU hosts NVIDIA's container does the same.

    lomar triton --model-repository /shared/models --http-port 8010
    lomar triton --model-repository /shared/models --http-port 8020 --grpc-port 8021

Triton loads the version each model's config.pbtxt publishes (a broken or undeployed version on disk is never
loaded); a model that fails to load neither stops it nor makes it unready. Its endpoints bind to --host
(127.0.0.1 by default: Triton's HTTP endpoint must never face untrusted clients). SIGINT/SIGTERM stop it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path

from lomar_serve.common.processes import configure_logging, stop_on_signals
from lomar_serve.common.settings import DEFAULT_MODEL_REPOSITORY
from lomar_serve.triton.server import TritonServerConfig
from lomar_serve.triton.supervisor import RestartPolicy, TritonSupervisor

LOGGER = logging.getLogger("lomar_serve.triton")


def fleet_config(model_repository: Path, **endpoints: int | str) -> TritonServerConfig:
    """How `lomar serve` and `lomar triton` run Triton: every model at start, each at its published version; a
    model or version that fails to load does not stop Triton or make it unready (the gateway's /readyz asks about
    the versions it serves)."""
    return TritonServerConfig(model_repository=model_repository.resolve(), exit_on_error=False,
                              strict_readiness=False, **endpoints)  # type: ignore[arg-type]


def launch_supervised(config: TritonServerConfig, policy: RestartPolicy, log_path: Path | None,
                      stopping: threading.Event) -> TritonSupervisor | None:
    """Start Triton and wait until it is ready; None if it never was, or `stopping` was set meanwhile."""
    supervisor = TritonSupervisor(config, policy=policy, log_path=log_path)
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
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--host", default="127.0.0.1", help="address Triton's endpoints bind to")
    parser.add_argument("--http-port", type=int, default=8010, help="HTTP endpoint (gateways, control plane)")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC endpoint (0: a free port)")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus metrics (0: a free port)")
    parser.add_argument("--log", type=Path, help="Triton's log file (default: temporary)")
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds one start may take")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO)
    if not args.model_repository.is_dir():
        print(f"lomar triton: model repository {args.model_repository} is not a directory", file=sys.stderr)
        return 2
    stopping = threading.Event()
    stop_on_signals(stopping, LOGGER)
    config = fleet_config(args.model_repository, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port)
    supervisor = launch_supervised(config, RestartPolicy(start_timeout_s=args.start_timeout), args.log, stopping)
    if supervisor is None:
        return 0 if stopping.is_set() else 1
    try:
        stopping.wait()
    finally:
        LOGGER.info("stopping Triton")
        supervisor.stop()
    return 0
