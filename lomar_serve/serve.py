"""`lomar serve` (everything on one box) and `lomar gateway` (the data plane alone, for a fleet).

    lomar serve                                   # Triton on ./model_repository + gateway on 127.0.0.1:8000
    LOMAR_ADMIN_TOKEN=... lomar serve             # + a control plane on 127.0.0.1:8100 and a worker (retrain, deploy)
    lomar serve --host 0.0.0.0 --port 8080 --model-repository /models
    lomar serve --triton-url triton:8000          # use a running Triton (e.g. NVIDIA's container)
    lomar gateway --triton-url triton-a:8000 --model-repository /shared/models   # one gateway of a fleet

Settings come from LOMAR_* environment variables (lomar_serve/settings.py); flags override them. SIGINT and
SIGTERM stop the gateway, then the control plane and worker, then Triton; no process is left behind.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from lomar_serve.api.timeouts import header_timeout_protocol
from lomar_serve.app import create_app
from lomar_serve.children import ChildProcess
from lomar_serve.control_plane.settings import ControlPlaneSettings
from lomar_serve.processes import configure_logging, load_settings, restore_signals, stop_on_signals
from lomar_serve.settings import Settings
from lomar_serve.triton.cli import fleet_config, launch_supervised
from lomar_serve.triton.supervisor import RestartPolicy, TritonSupervisor

LOGGER = logging.getLogger("lomar_serve.serve")


def build_parser(prog: str = "lomar serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
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
    """`lomar serve`: Triton (unless --triton-url), the gateway, and with LOMAR_ADMIN_TOKEN the control plane and
    a worker as child processes."""
    return _serve(argv, one_box=True)


def gateway_main(argv: list[str]) -> int:
    """`lomar gateway`: only the gateway, in front of the Triton at --triton-url / LOMAR_TRITON_URL."""
    return _serve(argv, one_box=False)


def _serve(argv: list[str], one_box: bool) -> int:
    args = build_parser("lomar serve" if one_box else "lomar gateway").parse_args(argv)
    overrides: dict[str, Any] = {key: value for key, value in {
        "model_repository": args.model_repository, "host": args.host, "port": args.port,
        "triton_url": args.triton_url, "log_level": args.log_level}.items() if value is not None}
    settings = load_settings(Settings, "lomar serve", overrides)
    if settings is None:
        return 2
    if not one_box and settings.triton_url is None:
        print("lomar gateway: give --triton-url or LOMAR_TRITON_URL (a gateway of a fleet never launches Triton; "
              "`lomar serve` does)", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    LOGGER.info("settings:\n%s", settings.describe())

    stopping = threading.Event()
    previous = stop_on_signals(stopping, LOGGER)
    supervisor: TritonSupervisor | None = None
    children: list[ChildProcess] = []
    try:
        if settings.triton_url is None:
            supervisor = _launch_triton(settings, args.triton_log, stopping)
            if supervisor is None:
                return 0 if stopping.is_set() else 1
            settings = settings.model_copy(update={"triton_url": supervisor.http_url})
        if stopping.is_set():
            return 0
        if one_box and os.environ.get("LOMAR_ADMIN_TOKEN"):
            try:
                children = _start_control_roles(settings)
            except ValidationError as error:
                print(f"lomar serve: invalid control-plane settings:\n{error}", file=sys.stderr)
                return 2
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                               log_level=settings.log_level, lifespan="on",
                                               http=header_timeout_protocol(settings.header_timeout_s)))
        server.run()  # handles SIGINT/SIGTERM itself while it runs, then hands them back to us
        return 0 if server.started or stopping.is_set() else 1
    finally:
        for child in reversed(children):
            LOGGER.info("stopping the %s", child.name)
            child.stop()
        if supervisor is not None:
            LOGGER.info("stopping Triton")
            supervisor.stop()
        restore_signals(previous)


def _start_control_roles(settings: Settings) -> list[ChildProcess]:
    """The control plane (admin API on LOMAR_CONTROL_HOST:PORT, default 127.0.0.1:8100) and one worker, as child
    processes on this box's Triton and repository; their other settings come from the same LOMAR_* environment.

    Raises:
        ValidationError: the control plane's settings (e.g. a too short LOMAR_ADMIN_TOKEN).
    """
    repository = str(settings.model_repository.resolve())
    control = ControlPlaneSettings(triton_urls=str(settings.triton_url), model_repository=repository)
    host = "127.0.0.1" if control.control_host in ("0.0.0.0", "::") else control.control_host
    env = dict(os.environ, LOMAR_TRITON_URLS=str(settings.triton_url), LOMAR_MODEL_REPOSITORY=repository,
               LOMAR_CONTROL_PLANE_URL=f"http://{host}:{control.control_port}")
    command = [sys.executable, "-m", "lomar_serve.cli"]
    roles = [ChildProcess("control plane", [*command, "control-plane"], env),
             ChildProcess("worker", [*command, "worker"], env)]
    for child in roles:
        child.start()
    return roles


def _launch_triton(settings: Settings, log_path: Path | None, stopping: threading.Event) -> TritonSupervisor | None:
    """Start Triton on the repository and wait until it is ready; None if it never was, or we were stopped."""
    policy = RestartPolicy(start_timeout_s=settings.triton_start_timeout_s,
                           max_restarts=settings.triton_max_restarts)
    return launch_supervised(fleet_config(settings.model_repository), policy, log_path, stopping)
