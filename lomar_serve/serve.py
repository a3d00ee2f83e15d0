"""`lomar serve`: the Triton server (launched and supervised, or an existing one) and the HTTP gateway.

    lomar serve                                   # Triton on ./model_repository + gateway on 127.0.0.1:8000
    lomar serve --host 0.0.0.0 --port 8080 --model-repository /models
    lomar serve --triton-url triton:8000          # use a running Triton (e.g. NVIDIA's container)

Settings come from LOMAR_* environment variables (lomar_serve/settings.py); flags override them. SIGINT and
SIGTERM stop the gateway, then Triton; no process is left behind.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from lomar_serve.api.timeouts import header_timeout_protocol
from lomar_serve.app import create_app
from lomar_serve.settings import Settings
from lomar_serve.triton.server import TritonServerConfig
from lomar_serve.triton.supervisor import RestartPolicy, TritonSupervisor

LOGGER = logging.getLogger("lomar_serve.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lomar serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, help="Triton model repository (default: ./model_repository)")
    parser.add_argument("--host", help="address the gateway listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gateway port (default 8000)")
    parser.add_argument("--triton-url", help="host:port of an existing Triton's HTTP endpoint; "
                                             "without it Triton is launched and supervised")
    parser.add_argument("--triton-log", type=Path, help="file for the launched Triton's log (default: temporary)")
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {key: value for key, value in {
        "model_repository": args.model_repository, "host": args.host, "port": args.port,
        "triton_url": args.triton_url, "log_level": args.log_level}.items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        print(f"lomar serve: invalid settings:\n{error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    LOGGER.info("settings:\n%s", settings.describe())

    stopping = threading.Event()
    previous = {sig: signal.signal(sig, _set_event(stopping)) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor: TritonSupervisor | None = None
    try:
        if settings.triton_url is None:
            supervisor = _launch_triton(settings, args.triton_log, stopping)
            if supervisor is None:
                return 0 if stopping.is_set() else 1
            settings = settings.model_copy(update={"triton_url": supervisor.http_url})
        if stopping.is_set():
            return 0
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                               log_level=settings.log_level, lifespan="on",
                                               http=header_timeout_protocol(settings.header_timeout_s)))
        server.run()  # handles SIGINT/SIGTERM itself while it runs, then hands them back to us
        return 0 if server.started or stopping.is_set() else 1
    finally:
        if supervisor is not None:
            LOGGER.info("stopping Triton")
            supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _launch_triton(settings: Settings, log_path: Path | None, stopping: threading.Event) -> TritonSupervisor | None:
    """Start Triton on the repository and wait until it is ready; None if it never was, or we were stopped."""
    config = TritonServerConfig(model_repository=settings.model_repository.resolve())
    policy = RestartPolicy(start_timeout_s=settings.triton_start_timeout_s,
                           max_restarts=settings.triton_max_restarts)
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


def _set_event(event: threading.Event):  # noqa: ANN202 (a signal handler)
    def handler(signum: int, frame: FrameType | None) -> None:
        LOGGER.info("received %s; shutting down", signal.Signals(signum).name)
        event.set()
    return handler
